"""The GSHN's training heads: the learned temperatures and projections whose outputs the
pretraining losses (:mod:`neurogshn.losses`) read. They are part of the model (saved with it,
built from its config); the losses are functions of what they return.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurogshn.model.spiking import LIFNeuronParameters, lif_layer_run


class LogitScale(nn.Module):
    r"""Learned inverse temperature :math:`s = \min(e^\theta, s_{max})`.

    Initialised at :math:`\theta_0 = \log(1/\tau_0)`.

    Args:
        temperature_init: initial temperature :math:`\tau_0`.
        max_scale: upper clamp of :math:`s` (CLIP uses 100).
    """

    def __init__(self, temperature_init: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.temperature_init = float(temperature_init)
        self.max_scale = float(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / self.temperature_init)))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.log_scale.fill_(math.log(1.0 / self.temperature_init))

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()


class SpatioTemporalHead(nn.Module):
    """Projection head ``h`` of the CL objective (Linear–ReLU–Linear).

    Shapes:
        - rates: ``*×H`` → ``*×P``
    """

    def __init__(self, in_features: int, out_features: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, in_features), nn.ReLU(), nn.Linear(in_features, out_features)
        )

    def reset_parameters(self) -> None:
        for m in self.net:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, rates: Tensor) -> Tensor:
        return F.normalize(self.net(rates), dim=-1)


class SpikingTextProjector(nn.Module):
    """Linear + LIF over ``T`` steps: token features → token spike codes.

    Args:
        in_features: token feature size ``D``.
        out_features: code size ``H`` (the visual ``E_SNN`` size).
        time_steps: ``T``.
        neuron: LIF parameters (those of the visual encoder).
        temperature_init: initial temperature of the STL InfoNCE.
        max_scale: clamp of the learned inverse temperature.

    Shapes:
        - tokens: ``B×L×D`` → spikes ``T×B×L×H``, rates ``B×L×H``
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        time_steps: int,
        neuron: LIFNeuronParameters | None = None,
        temperature_init: float = 0.07,
        max_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.time_steps = int(time_steps)
        self.neuron = neuron or LIFNeuronParameters()
        self.norm = nn.LayerNorm(in_features)
        self.linear = nn.Linear(in_features, out_features)
        self.temperature_init = float(temperature_init)
        self.max_scale = float(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / self.temperature_init)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        nn.init.kaiming_uniform_(self.linear.weight, a=5**0.5)
        with torch.no_grad():
            self.linear.weight.mul_(2.0)
        nn.init.constant_(self.linear.bias, 0.25)
        with torch.no_grad():
            self.log_scale.fill_(math.log(1.0 / self.temperature_init))

    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        params = self.neuron.to_norse()
        params = params._replace(
            **{k: v.to(tokens.device) for k, v in params._asdict().items() if torch.is_tensor(v)}
        )
        current = self.linear(self.norm(tokens))
        current = current.unsqueeze(0).expand(self.time_steps, *current.shape)
        spikes, _ = lif_layer_run(current, params, self.neuron.dt)
        return spikes, spikes.mean(0)
