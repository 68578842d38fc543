r"""Quantization of a :class:`~neurogshn.model.spiking.SpikingEncoder` for Loihi (CUBA LIF).

Exact Norse → CUBA mapping (derivation in docs/hardware.md). Norse's ``lif_feed_forward_step``
(with ``v_leak = v_reset = 0``, decays :math:`\delta_s = \Delta t\,\tau_{syn}^{-1}`,
:math:`\delta_m = \Delta t\,\tau_{mem}^{-1}`) is, writing :math:`i'_t` for the current *after*
the input jump,

.. math::
    i'_t = (1-\delta_s)\,i'_{t-1} + c_t, \qquad
    v'_t = (1-\delta_m)\,v_{t-1} + \delta_m\,i'_t, \qquad z_t = [v'_t > v_{th}].

Lava's CUBA LIF (``lava.proc.lif`` fixed_pt, ``du = iDecay - 1`` set by netx) is

.. math::
    u_t = (1 - \tfrac{iDecay}{4096})\,u_{t-1} + 64\,a_t, \qquad
    v_t = (1 - \tfrac{vDecay}{4096})\,v_{t-1} + u_t, \qquad s_t = [v_t > 64\,vThMant].

With the integer input :math:`a_t = s\,c_t` (``s``: integer units per Norse current unit),
:math:`u_t = 64\,s\,i'_t` and :math:`v_t = (64\,s/\delta_m)\,v'_t`, so the two models are the
same up to rounding when

.. math::
    iDecay = 4096\,\delta_s, \quad vDecay = 4096\,\delta_m, \quad
    vThMant = s\,v_{th} / \delta_m, \quad W_{int} = s\,W.

Layer 0's input ``W_0 x + b_0`` is real-valued; it is computed on the host and enters the chip
as graded (integer) input messages :math:`a_t = \mathrm{round}(s_0 (W_0 x + b_0))` at every step
through an identity synapse (netx: ``Network(input_message_bits=16)``). Later layers receive
binary spikes through 8-bit synapses: even integers in [-256, 254] (Loihi's mixed-sign 8-bit
weights drop the least significant bit, as slayer's ``quantize_8bit`` does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from neurogshn.errors import ExportError
from neurogshn.utils.names import layer_name

DECAY_UNITY = 4096  # 12-bit decay fractions
VTH_MANT_MAX = (1 << 17) - 1  # vth: unsigned 17-bit
UV_MAX = (1 << 23) - 1  # u, v: signed 24-bit
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # mixed-sign 8-bit synapse, even integers
A_IN_MAX = (1 << 15) - 1  # neuron input a_in: 16-bit signed (LIF a_in precision in Lava)
INPUT_MESSAGE_BITS = 16  # graded input messages of the first layer


@dataclass(frozen=True)
class CubaMapping:
    """Norse LIF parameters mapped onto Loihi CUBA integer decays.

    Attributes:
        i_decay: netx ``iDecay`` (= ``round(4096·dt·τ_syn⁻¹)``, 1…4096; Lava ``du = iDecay-1``).
        v_decay: netx ``vDecay`` (= ``round(4096·dt·τ_mem⁻¹)``, 0…4095).
        syn_decay: the exact Norse value ``dt·τ_syn⁻¹``.
        mem_decay: the exact Norse value ``dt·τ_mem⁻¹``.
        v_th: Norse threshold.
    """

    i_decay: int
    v_decay: int
    syn_decay: float
    mem_decay: float
    v_th: float

    @property
    def syn_decay_error(self) -> float:
        return self.i_decay / DECAY_UNITY - self.syn_decay

    @property
    def mem_decay_error(self) -> float:
        return self.v_decay / DECAY_UNITY - self.mem_decay

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["syn_decay_error"] = self.syn_decay_error
        out["mem_decay_error"] = self.mem_decay_error
        return out


def norse_to_cuba(syn_decay: float, mem_decay: float, v_th: float) -> CubaMapping:
    """Map Norse decays (``dt·τ⁻¹``) and threshold to CUBA's 12-bit decays.

    Raises:
        ExportError: when a decay cannot be expressed in Loihi's 12-bit decay registers
            (``iDecay`` must round into 1…4096, ``vDecay`` into 0…4095: a membrane that forgets
            completely in one step, ``dt·τ_mem⁻¹ = 1``, has no 12-bit ``dv``), or the
            threshold is not positive.
    """
    i_decay = round(syn_decay * DECAY_UNITY)
    v_decay = round(mem_decay * DECAY_UNITY)
    if not 1 <= i_decay <= DECAY_UNITY:
        raise ExportError(
            f"synaptic decay dt*tau_syn_inv = {syn_decay} gives iDecay = {i_decay}; Loihi needs "
            f"1..{DECAY_UNITY} (du = iDecay - 1 is an unsigned 12-bit register)"
        )
    if not 0 <= v_decay <= DECAY_UNITY - 1:
        raise ExportError(
            f"membrane decay dt*tau_mem_inv = {mem_decay} gives vDecay = {v_decay}; Loihi's dv is "
            f"an unsigned 12-bit register (0..{DECAY_UNITY - 1}); use dt*tau_mem_inv <= "
            f"{(DECAY_UNITY - 1) / DECAY_UNITY:.6f}"
        )
    if mem_decay <= 0:
        raise ExportError(f"membrane decay must be positive, got {mem_decay}")
    if not v_th > 0:
        raise ExportError(f"threshold must be positive, got {v_th}")
    return CubaMapping(i_decay, v_decay, float(syn_decay), float(mem_decay), float(v_th))


@dataclass
class QuantizedLayer:
    """One CUBA layer of the exported network.

    Attributes:
        name: ``"layer0"`` … (the encoder's layer index).
        weight: integer synaptic weights ``out×in`` (``None`` for layer 0, which receives graded
            input messages through an identity synapse).
        scale: integer input units per Norse current unit (``a = scale·c``).
        vth_mant: netx ``vThMant`` (Lava ``vth``; spikes when ``v > vth·64``).
        report: quantization error figures (see :func:`quantize_encoder`).
    """

    name: str
    size: int
    weight: np.ndarray | None
    scale: float
    vth_mant: int
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantizedNetwork:
    """The spiking encoder in Loihi integers plus the host-side first projection.

    Attributes:
        time_steps: ``T`` (steps per node).
        in_features: host input size ``F``.
        host_weight, host_bias: layer 0's float projection ``W_0`` (``H_0×F``), ``b_0``
            (computed on the host).
        mapping: the shared :class:`CubaMapping`.
        layers: the CUBA layers; ``layers[0]`` is fed by graded input.
        input_saturation: ``A_IN_MAX``: the host clips graded input to ±this.
    """

    time_steps: int
    in_features: int
    host_weight: np.ndarray
    host_bias: np.ndarray
    mapping: CubaMapping
    layers: list[QuantizedLayer]
    input_saturation: int = A_IN_MAX

    @property
    def sizes(self) -> list[int]:
        return [layer.size for layer in self.layers]

    def host_current(self, x: np.ndarray) -> np.ndarray:
        """Layer 0's float input current ``W_0 x + b_0`` (``N×F`` → ``N×H_0``)."""
        x = np.asarray(x, dtype=np.float64)
        return x @ self.host_weight.astype(np.float64).T + self.host_bias.astype(np.float64)

    def host_input(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Graded integer input messages for layer 0 and how many saturated.

        Shapes:
            x: ``N×F`` → ``N×H_0`` int32 in ±``input_saturation``.
        """
        a = np.round(self.host_current(x) * self.layers[0].scale)
        saturated = int(np.count_nonzero(np.abs(a) > self.input_saturation))
        a = np.clip(a, -self.input_saturation, self.input_saturation)
        return a.astype(np.int32), saturated

    def report(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping.to_dict(),
            "layers": [{"name": q.name, **q.report} for q in self.layers],
        }


def _max_input_for_state(i_decay: int) -> int:
    """Largest constant |a| whose steady state current ``64·a·4096/iDecay`` fits 24 bits."""
    return int(min(A_IN_MAX, np.floor(UV_MAX * i_decay / (64 * DECAY_UNITY))))


def quantize_weight(
    weight: np.ndarray, scale: float, clip: bool, layer_name: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Round ``scale·W`` to even integers in [-256, 254].

    Raises:
        ExportError: when a weight falls outside the range and ``clip`` is False.
    """
    scaled = np.asarray(weight, dtype=np.float64) * scale
    q = 2.0 * np.round(scaled / 2.0)
    outside = (q < WEIGHT_MIN) | (q > WEIGHT_MAX)
    n_out = int(outside.sum())
    if n_out and not clip:
        raise ExportError(
            f"{layer_name}: {n_out} of {q.size} weights fall outside Loihi's 8-bit range "
            f"[{WEIGHT_MIN}, {WEIGHT_MAX}] at scale {scale:.4g} (largest |scaled weight| "
            f"{np.abs(scaled).max():.1f}); pass --clip to clip them, or use the automatic scale"
        )
    q = np.clip(q, WEIGHT_MIN, WEIGHT_MAX)
    err = q / scale - weight
    norm = float(np.linalg.norm(weight)) or 1.0
    report = {
        "weight_scale": float(scale),
        "weight_rel_rms_error": float(np.linalg.norm(err) / norm),
        "weight_max_abs_error": float(np.abs(err).max()) if err.size else 0.0,
        "weights_clipped": n_out,
        "weights_clipped_fraction": n_out / max(q.size, 1),
        "weights_zeroed": int(np.count_nonzero((q == 0) & (weight != 0))),
    }
    return q.astype(np.int32), report


def quantize_encoder(
    encoder: Any,
    calibration_inputs: np.ndarray | None = None,
    *,
    weight_scale: float | None = None,
    clip: bool = False,
) -> QuantizedNetwork:
    """Quantize a :class:`~neurogshn.model.spiking.SpikingEncoder` for Loihi / netx.

    Args:
        encoder: the float encoder (``layers``: ``nn.Linear`` list, ``neuron``,
            ``time_steps``).
        calibration_inputs: ``N×F`` encoder inputs used to choose layer 0's input scale (the
            largest ``|W_0 x + b_0|`` seen maps to the largest graded message that cannot
            overflow Lava's 24-bit current); ``None`` uses a bound from ``|W_0|`` and unit
            inputs.
        weight_scale: ``None`` (default): per-layer scale ``254 / max|W_l|``; a number: one
            fixed scale for all spiking-input layers (like slayer's 64); weights out of range
            then raise unless ``clip``.
        clip: clip out-of-range weights instead of raising (the report says how many).

    Raises:
        ExportError: decays or thresholds Loihi cannot express, weights out of range.
    """
    neuron = encoder.neuron
    mapping = norse_to_cuba(neuron.syn_decay, neuron.mem_decay, neuron.v_th)
    dm = mapping.mem_decay
    scale_cap = VTH_MANT_MAX * dm / mapping.v_th  # keeps vThMant within 17 bits
    linears = list(encoder.layers)
    w0 = linears[0].weight.detach().cpu().double().numpy()
    b0 = (
        linears[0].bias.detach().cpu().double().numpy()
        if linears[0].bias is not None
        else np.zeros(w0.shape[0])
    )
    layers: list[QuantizedLayer] = []

    # layer 0: graded input, scale from the calibration currents
    if calibration_inputs is not None and len(calibration_inputs):
        c0 = np.asarray(calibration_inputs, np.float64) @ w0.T + b0
        c_max = float(np.abs(c0).max())
    else:
        c0 = None
        c_max = float(np.abs(w0).sum(axis=1).max() + np.abs(b0).max())
    a_max = _max_input_for_state(mapping.i_decay)
    s0 = min(a_max / max(c_max, 1e-12), scale_cap)
    vth0 = round(s0 * mapping.v_th / dm)
    if vth0 < 1:
        raise ExportError(
            f"layer0: threshold mantissa rounds to {vth0} at input scale {s0:.4g}; the input "
            "currents are too large relative to v_th for Loihi's 24-bit state"
        )
    report0: dict[str, Any] = {
        "kind": "graded input (host computes W0 x + b0)",
        "input_scale": s0,
        "max_abs_input_message": a_max,
        "vth_mant": vth0,
        "threshold_rel_error": vth0 * dm / (s0 * mapping.v_th) - 1.0,
    }
    if c0 is not None:
        a = np.clip(np.round(c0 * s0), -A_IN_MAX, A_IN_MAX)
        report0["input_rel_rms_error"] = float(
            np.linalg.norm(a / s0 - c0) / (np.linalg.norm(c0) or 1.0)
        )
        report0["calibration_max_abs_current"] = c_max
    layers.append(QuantizedLayer("layer0", w0.shape[0], None, s0, vth0, report0))

    for li, lin in enumerate(linears[1:], start=1):
        name = layer_name(li)
        if lin.bias is not None:
            raise ExportError(
                f"{name}: has a bias; only the first (host-fed) layer may have one in this export"
            )
        w = lin.weight.detach().cpu().double().numpy()
        w_max = float(np.abs(w).max())
        if weight_scale is None:
            s = WEIGHT_MAX / w_max if w_max > 0 else 1.0
        else:
            s = float(weight_scale)
        if s > scale_cap:
            s = scale_cap
        w_int, rep = quantize_weight(w, s, clip, name)
        vth = round(s * mapping.v_th / dm)
        if not 1 <= vth <= VTH_MANT_MAX:
            raise ExportError(
                f"{name}: vThMant = {vth} outside 1..{VTH_MANT_MAX} at weight scale {s:.4g}"
            )
        pos = np.clip(w_int, 0, None).sum(axis=1).max()
        neg = np.clip(w_int, None, 0).sum(axis=1).min()
        rep.update(
            {
                "kind": "binary spikes through 8-bit synapses",
                "vth_mant": vth,
                "threshold_rel_error": vth * dm / (s * mapping.v_th) - 1.0,
                "worst_case_abs_a_in": int(max(pos, -neg)),
                "a_in_may_exceed_16_bit": bool(max(pos, -neg) > A_IN_MAX),
            }
        )
        layers.append(QuantizedLayer(name, w.shape[0], w_int, s, vth, rep))

    return QuantizedNetwork(
        time_steps=int(encoder.time_steps),
        in_features=int(w0.shape[1]),
        host_weight=w0.astype(np.float32),
        host_bias=b0.astype(np.float32),
        mapping=mapping,
        layers=layers,
    )
