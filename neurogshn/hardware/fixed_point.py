r"""NumPy integer reference of the exported network, bit-exact with Lava's fixed-point models.

What it reproduces (read from lava-nc 0.10.0 / lava-dl 0.6.0, re-implemented here):

* netx's weight preparation (``optimize_weight_bits``: sign mode, a left shift that
  MSB-aligns the weights, ``weight_exp``) and Lava's bit-accurate ``Dense`` (clip to 8 bits in
  the sign mode, truncate the unused low bits, accumulate, shift the sum by ``weight_exp``);
* Lava's bit-accurate CUBA LIF (``PyLifModelBitAcc``), per step with input ``a``:

.. math::
    u &\leftarrow \mathrm{sgn}(u\,(4096-iDecay))\,\big(|u\,(4096-iDecay)| \gg 12\big)
         + (a \ll 6) \quad\text{(wrapped to 24 bits)} \\
    v &\leftarrow \mathrm{sgn}(v\,(4096-vDecay))\,\big(|v\,(4096-vDecay)| \gg 12\big) + u
         \quad\text{(clipped to } \pm(2^{23}-1)) \\
    s &= [v > vThMant \ll 6], \qquad v \leftarrow 0 \text{ where } s.

Timing: the reference is *aligned*: layer ``l`` at step ``t`` sees layer ``l-1``'s spikes of the
same step, as Norse does. Lava adds one step of synaptic delay per ``Dense`` block; the Lava
runner (:mod:`neurogshn.hardware.lava_runner`) removes those offsets before comparing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ExportError

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6
VTH_SHIFT = 6
UV_HALF = 1 << 23


@dataclass(frozen=True)
class FixedPointSynapse:
    """Integer synapse as Lava's bit-accurate Dense applies it: ``(W_eff @ s) >> -exp``."""

    weight: np.ndarray  # int64, out×in, after netx's shift, Lava's clip and truncation
    weight_exp: int

    def __call__(self, s_in: np.ndarray) -> np.ndarray:
        """``s_in``: ``N×in`` (binary or graded ints) → ``N×out`` int64."""
        acc = np.asarray(s_in, dtype=np.int64) @ self.weight.T
        acc = acc.astype(np.int32).astype(np.int64)  # Lava accumulates in int32
        if self.weight_exp > 0:
            return np.left_shift(acc, self.weight_exp)
        return np.right_shift(acc, -self.weight_exp)

    @property
    def effective_integer_weight(self) -> np.ndarray:
        """The weight the synapse really applies, in the stored weight's units."""
        if self.weight_exp >= 0:
            return self.weight * (1 << self.weight_exp)
        return self.weight / float(1 << -self.weight_exp)


def loihi_synapse(weight: np.ndarray) -> FixedPointSynapse:
    """Prepare stored integer weights exactly as netx + Lava's bit-accurate Dense do.

    Raises:
        ExportError: for an all-zero weight matrix (netx cannot choose a scale for it).
    """
    w = np.asarray(weight).astype(np.int64)
    w_max, w_min = int(w.max()), int(w.min())
    if w_max == 0 and w_min == 0:
        raise ExportError("an all-zero weight matrix cannot be mapped by netx")
    # netx: clip when both signs occur and the range is exceeded
    if (w_max > 254 and w_min < 0) or (w_min < -256 and w_max > 0):
        w = np.clip(w, -256, 254)
        w_max, w_min = int(w.max()), int(w.min())
    # netx's classification chooses the shift and the number of weight bits
    if w_max < 0:
        signed = 0
        scale = -256 / w_min
    elif w_min >= 0:
        signed = 0
        scale = 255 / w_max
    else:
        signed = 1
        pos = 127 / w_max if w_max > 0 else np.inf
        scale = min(pos, -128 / w_min)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    w = np.left_shift(w, scale_bits) if scale_bits >= 0 else np.right_shift(w, -scale_bits)
    # Lava's Dense re-derives the sign mode from the shifted weights (no sign_mode is passed
    # by netx), then clips to 8 bits and truncates the unused low bits
    if w.min() >= 0:
        mode = "excitatory"
    elif w.max() <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    if mode == "inhibitory":
        w = -w
    lo = -(1 << 8) if mode == "mixed" else 0
    w = np.clip(w, lo, (1 << 8) - 1)
    truncate = 8 - num_weight_bits + (1 if mode == "mixed" else 0)
    w = np.left_shift(np.right_shift(w, truncate), truncate)
    if mode == "inhibitory":
        w = -w
    return FixedPointSynapse(w.astype(np.int64), int(weight_exp))


@dataclass(frozen=True)
class FixedPointLayer:
    """One CUBA layer: synapse (``None``: graded input applied directly) and neuron."""

    synapse: FixedPointSynapse
    i_decay: int
    v_decay: int
    vth_mant: int


def _decay(x: np.ndarray, keep: int) -> np.ndarray:
    prod = x * keep
    return np.sign(prod) * np.right_shift(np.abs(prod), DECAY_SHIFT)


def cuba_step(
    u: np.ndarray, v: np.ndarray, a_in: np.ndarray, layer: FixedPointLayer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bit-accurate CUBA update (int64 arrays; returns ``u, v, spikes``)."""
    u = _decay(u, DECAY_UNITY - layer.i_decay) + np.left_shift(a_in, ACT_SHIFT)
    u = np.where(u > UV_HALF, u - 2 * UV_HALF, u)
    u = np.where(u <= -UV_HALF, u + 2 * UV_HALF, u)
    v = _decay(v, DECAY_UNITY - layer.v_decay) + u
    v = np.clip(v, -UV_HALF + 1, UV_HALF - 1)
    spikes = v > (layer.vth_mant << VTH_SHIFT)
    v = np.where(spikes, 0, v)
    return u, v, spikes


class FixedPointNetwork:
    """Integer reference of an exported network (aligned timing, all nodes at once).

    Args:
        layers: CUBA layers; ``layers[0]`` receives the graded host input through its synapse.
        time_steps: ``T``.
    """

    def __init__(self, layers: list[FixedPointLayer], time_steps: int) -> None:
        self.layers = layers
        self.time_steps = int(time_steps)

    @classmethod
    def from_netx(cls, path: str | Path, time_steps: int) -> FixedPointNetwork:
        """Build the reference from a ``.net`` file (see :mod:`neurogshn.hardware.netx_export`)."""
        from neurogshn.hardware.netx_export import read_netx

        spec = read_netx(path)
        layers = [
            FixedPointLayer(
                loihi_synapse(layer["weight"]),
                int(layer["iDecay"]),
                int(layer["vDecay"]),
                int(layer["vThMant"]),
            )
            for layer in spec
        ]
        return cls(layers, time_steps)

    @classmethod
    def from_quantized(cls, qnet: Any) -> FixedPointNetwork:
        """Build the reference from an in-memory :class:`QuantizedNetwork` (same as the file)."""
        m = qnet.mapping
        layers = [
            FixedPointLayer(
                loihi_synapse(np.eye(q.size, dtype=np.int64) if q.weight is None else q.weight),
                m.i_decay,
                m.v_decay,
                q.vth_mant,
            )
            for q in qnet.layers
        ]
        return cls(layers, qnet.time_steps)

    def run(self, a0: np.ndarray, record_state: bool = False) -> dict[str, list[np.ndarray]]:
        """Run all nodes for ``T`` steps with constant graded input ``a0``.

        Args:
            a0: ``N×H_0`` integer input messages (held for the ``T`` steps).
            record_state: also return ``u`` and ``v`` traces.

        Returns:
            ``{"spikes": [T×N×H_l bool per layer], "u": [...], "v": [...]}``.
        """
        a0 = np.asarray(a0, dtype=np.int64)
        n = a0.shape[0]
        states = [
            (np.zeros((n, layer.synapse.weight.shape[0]), np.int64),) * 2 for layer in self.layers
        ]
        spikes: list[list[np.ndarray]] = [[] for _ in self.layers]
        us: list[list[np.ndarray]] = [[] for _ in self.layers]
        vs: list[list[np.ndarray]] = [[] for _ in self.layers]
        first_input = self.layers[0].synapse(a0)
        for _ in range(self.time_steps):
            s_prev = None
            for li, layer in enumerate(self.layers):
                a_in = first_input if li == 0 else layer.synapse(s_prev)
                u, v = states[li]
                u, v, s = cuba_step(u, v, a_in, layer)
                states[li] = (u, v)
                spikes[li].append(s)
                if record_state:
                    us[li].append(u)
                    vs[li].append(v)
                s_prev = s
        out = {"spikes": [np.stack(s) for s in spikes]}
        if record_state:
            out["u"] = [np.stack(x) for x in us]
            out["v"] = [np.stack(x) for x in vs]
        return out
