r"""Fusion of the two branches and pooling of the image embedding.

The only module that sees both branches. With ``E_SNN`` the spiking encoder's discrete latent
(firing rates of its last layer, values in :math:`\{0, 1/T, …, 1\}`) and ``F_GAT`` the GAT
stage's continuous latent:

.. math::
    V' = r \cdot W_{ro} E_{SNN} + F_{GAT}

with a learned scalar ``r`` (``mode="full"``). ``W_{ro}`` (:class:`SpikeReadout`) is a linear
readout from the spike-rate code to the joint size ``D`` — a rate code is non-negative and of
another size, so it cannot be added to ``F_GAT`` as it is. ``mode="gat_only"``: ``V' = F_GAT``;
``mode="snn_only"``: ``V' = W_{ro} E_{SNN}`` (``r`` would be a mere scale and is not built).

Image embedding (:class:`GraphPooling`), per graph :math:`b` with nodes :math:`n \in b` and
global node :math:`g_b`:

.. math::
    a_n = \operatorname{softmax}_{n \in b}(w^\top \mathrm{LN}(V'_n)), \qquad
    u_b = W_{out}\,[\textstyle\sum_n a_n V'_n \,\Vert\, V'_{g_b}]

(``pooling="mean"``: the attention weights are uniform). The node embeddings ``V'`` are kept
for the fine-grained objectives (STL, ITM).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.aggr import AttentionalAggregation, MeanAggregation


class SpikeReadout(nn.Module):
    """Linear readout from spike rates to the joint embedding size.

    Shapes:
        - rates: ``N×H`` (values in [0, 1]) → ``N×D``
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()

    def forward(self, rates: Tensor) -> Tensor:
        return self.linear(rates)


class HybridFusion(nn.Module):
    r"""``V' = r·E + F`` with a learned scalar ratio ``r``.

    Args:
        ratio_init: initial value of ``r``.
    """

    def __init__(self, ratio_init: float = 1.0) -> None:
        super().__init__()
        self.ratio_init = float(ratio_init)
        self.ratio = nn.Parameter(torch.tensor(self.ratio_init))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.ratio.fill_(self.ratio_init)

    def forward(self, snn: Tensor, gat: Tensor) -> Tensor:
        return self.ratio * snn + gat


class GraphPooling(nn.Module):
    """Image embedding from the node embeddings: attention (or mean) pooling + global node.

    Args:
        dim: node embedding size ``D``.
        mode: ``"attention"`` or ``"mean"``.

    Shapes:
        - nodes: ``N×D``; batch: ``N`` (graph of each node); global_index: ``B`` (row of each
          graph's global node)
        - output: ``B×D`` (not normalised)
    """

    def __init__(self, dim: int, mode: str = "attention") -> None:
        super().__init__()
        self.mode = mode
        if mode == "attention":
            gate = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))
            self.aggr: nn.Module = AttentionalAggregation(gate_nn=gate)
        elif mode == "mean":
            self.aggr = MeanAggregation()
        else:
            raise ValueError(f"unknown pooling {mode!r}")
        self.out = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def reset_parameters(self) -> None:
        self.aggr.reset_parameters()
        for m in self.out:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(
        self, nodes: Tensor, batch: Tensor, global_index: Tensor, num_graphs: int
    ) -> Tensor:
        pooled = self.aggr(nodes, batch, dim_size=num_graphs)
        return self.out(torch.cat([pooled, nodes[global_index]], dim=-1))
