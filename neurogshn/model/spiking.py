r"""Spiking encoder: stacked Linear + LIF layers built on Norse's functional LIF step.

The encoder knows nothing about graphs: it maps a matrix of node features ``N×F`` to spike
trains, so it alone can be exported to Loihi (``neurogshn.hardware``).

Neuron model (Norse ``lif_feed_forward_step``, forward Euler with step ``dt``), per layer
``l`` and time step ``t``, with input current :math:`c_t`:

.. math::
    i'_t &= i_{t-1} + c_t \\
    v'_t &= v_{t-1} + \Delta t\,\tau_{mem}^{-1}\,(v_{leak} - v_{t-1} + i'_t) \\
    z_t  &= \Theta(v'_t - v_{th}) \\
    v_t  &= (1 - z_t)\,v'_t + z_t\,v_{reset}, \qquad
    i_t = (1 - \Delta t\,\tau_{syn}^{-1})\,i'_t

Input encoding ("direct"/current encoding): the first layer receives the constant current
:math:`c_t = W_0 x + b_0` at every one of the ``T`` steps; layer :math:`l > 0` receives
:math:`c_t = W_l z^{(l-1)}_t` (spikes in, no bias). The discrete latent :math:`E_{SNN}` is the
firing rate of the last layer, :math:`\frac{1}{T}\sum_t z_t \in \{0, 1/T, …, 1\}`.

Loihi's CUBA neuron (DESIGN.md §5) has no leak potential and resets to 0, and its decays are
12-bit fractions, so :class:`LIFNeuronParameters` only admits ``v_leak = v_reset = 0`` and
``dt·τ⁻¹`` in (0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step
from torch import Tensor, nn


@dataclass(frozen=True)
class LIFNeuronParameters:
    """Parameters of the encoder's LIF neurons (shared by all layers).

    Args:
        tau_syn_inv: inverse synaptic time constant :math:`\\tau_{syn}^{-1}` (1/step units
            when ``dt = 1``).
        tau_mem_inv: inverse membrane time constant :math:`\\tau_{mem}^{-1}`.
        v_th: firing threshold.
        dt: integration step.
        surrogate: Norse surrogate-gradient method (``"super"``, ``"tanh"``, ``"triangle"`` …).
        alpha: sharpness of the surrogate gradient.
    """

    tau_syn_inv: float = 0.5
    tau_mem_inv: float = 0.75
    v_th: float = 1.0
    dt: float = 1.0
    surrogate: str = "super"
    alpha: float = 30.0

    def __post_init__(self) -> None:
        for name in ("tau_syn_inv", "tau_mem_inv"):
            decay = self.dt * getattr(self, name)
            if not 0.0 < decay <= 1.0:
                raise ValueError(
                    f"dt*{name} = {decay} must lie in (0, 1]: Loihi's CUBA decays are "
                    "12-bit fractions of one step"
                )
        if self.v_th <= 0:
            raise ValueError(f"v_th must be positive, got {self.v_th}")

    @property
    def syn_decay(self) -> float:
        """Fraction of synaptic current lost per step, ``dt·τ_syn⁻¹``."""
        return self.dt * self.tau_syn_inv

    @property
    def mem_decay(self) -> float:
        """Fraction of membrane voltage lost per step, ``dt·τ_mem⁻¹``."""
        return self.dt * self.tau_mem_inv

    def to_norse(self) -> LIFParameters:
        return LIFParameters(
            tau_syn_inv=torch.as_tensor(self.tau_syn_inv),
            tau_mem_inv=torch.as_tensor(self.tau_mem_inv),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(self.v_th),
            v_reset=torch.as_tensor(0.0),
            method=self.surrogate,
            alpha=torch.as_tensor(self.alpha),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpikingEncoderOutput(NamedTuple):
    """What :class:`SpikingEncoder` returns.

    Attributes:
        spikes: one tensor per layer, time first, ``T×N×D_l``, values in {0, 1}.
        latent: the discrete latent ``E_SNN`` = last layer's firing rate, ``N×D_L``.
        voltages: per layer ``T×N×D_l`` membrane potentials after reset, or ``None`` unless
            requested with ``record_voltages=True``.
    """

    spikes: list[Tensor]
    latent: Tensor
    voltages: list[Tensor] | None


def lif_layer_run(
    currents: Tensor, params: LIFParameters, dt: float, record_voltage: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Run one LIF layer over time.

    Args:
        currents: input current per step, ``T×N×D``.
        params: Norse LIF parameters.
        dt: integration step.
        record_voltage: also return the membrane potential trace.

    Returns:
        spikes ``T×N×D`` and (optionally) voltages ``T×N×D``.
    """
    zeros = torch.zeros_like(currents[0])
    state = LIFFeedForwardState(v=zeros, i=zeros)
    spikes, volts = [], []
    for current in currents:
        z, state = lif_feed_forward_step(current, state, params, dt)
        spikes.append(z)
        if record_voltage:
            volts.append(state.v)
    return torch.stack(spikes), (torch.stack(volts) if record_voltage else None)


class SpikingEncoder(nn.Module):
    """Stacked Linear + LIF layers over ``T`` time steps (direct current input encoding).

    Args:
        in_features: input feature size ``F``.
        hidden_features: sizes of the spiking layers, e.g. ``(256, 256)``.
        time_steps: number of simulation steps ``T``.
        neuron: LIF parameters shared by all layers.

    Shapes:
        - input: ``N×F`` (any leading node dimension ``N``, including 0)
        - output: see :class:`SpikingEncoderOutput`
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (256, 256),
        time_steps: int = 6,
        neuron: LIFNeuronParameters | None = None,
    ) -> None:
        super().__init__()
        if time_steps < 1:
            raise ValueError(f"time_steps must be >= 1, got {time_steps}")
        if not hidden_features:
            raise ValueError("hidden_features needs at least one layer")
        self.in_features = in_features
        self.hidden_features = tuple(int(h) for h in hidden_features)
        self.time_steps = int(time_steps)
        self.neuron = neuron or LIFNeuronParameters()
        sizes = (in_features, *self.hidden_features)
        self.layers = nn.ModuleList(
            nn.Linear(sizes[i], sizes[i + 1], bias=(i == 0)) for i in range(len(sizes) - 1)
        )
        self.reset_parameters()

    @property
    def out_features(self) -> int:
        return self.hidden_features[-1]

    def reset_parameters(self) -> None:
        # Scaled so that a unit-variance input drives roughly half of the first layer above
        # threshold within T steps; later layers get fan-in scaled weights for binary input.
        for i, layer in enumerate(self.layers):
            gain = 2.0 if i == 0 else 3.0
            nn.init.kaiming_uniform_(layer.weight, a=5**0.5)
            with torch.no_grad():
                layer.weight.mul_(gain)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.25)

    def forward(self, x: Tensor, record_voltages: bool = False) -> SpikingEncoderOutput:
        params = self.neuron.to_norse()
        params = LIFParameters(*(p.to(x.device) if isinstance(p, Tensor) else p for p in params))
        current = self.layers[0](x).unsqueeze(0).expand(self.time_steps, *x.shape[:-1], -1)
        spikes: list[Tensor] = []
        voltages: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                current = layer(spikes[-1])
            z, v = lif_layer_run(current, params, self.neuron.dt, record_voltages)
            spikes.append(z)
            if v is not None:
                voltages.append(v)
        latent = spikes[-1].mean(dim=0)
        return SpikingEncoderOutput(spikes, latent, voltages if record_voltages else None)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, hidden_features={self.hidden_features}, "
            f"time_steps={self.time_steps}, neuron={self.neuron}"
        )
