r"""Graph attention stage: continuous node latents ``F_GAT`` from a scene graph.

Knows nothing about spikes. Per layer :math:`l` (pre-projection :math:`h^{(0)} = W_{in}\,
\mathrm{LN}(x)`), with GATv2 attention over the graph's edges (Brody et al., ICLR 2022) using
the edge attributes :math:`e_{ij}` (relative geometry):

.. math::
    \alpha_{ij} &= \operatorname{softmax}_j\big(a^\top \mathrm{LeakyReLU}
        (W_s h_i + W_t h_j + W_e e_{ij})\big) \\
    h^{(l+1)}_i &= \mathrm{LN}\Big(h^{(l)}_i + \mathrm{Dropout}\big(\mathrm{GELU}
        (\Vert_{k=1}^{K} \textstyle\sum_j \alpha^k_{ij} W^k_t h^{(l)}_j)\big)\Big)

Local context comes from the edges (adjacency / nearest neighbours); global context from the
global node (node 0 of every graph, connected to every segment by the graph builder) and from
the attention pooling of the fusion (:mod:`neurogshn.model.fusion`). Self-loops are always
added (edge attribute of a self-loop: the mean of the node's incoming edge attributes, or 0),
so graphs with no edges (the ``edges="none"`` ablation) and graphs with only the global node
are handled: every node then attends only to itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, TransformerConv


class GATStage(nn.Module):
    """Stacked GATv2 layers with residual connections and LayerNorm.

    Args:
        in_features: node feature size ``F``.
        hidden: output size ``D`` (also the hidden size).
        edge_features: edge attribute size ``G`` (0: attributes are ignored).
        layers: number of GATv2 layers ``L``.
        heads: attention heads (``hidden`` divisible by ``heads``; heads are concatenated).
        dropout: dropout on the layer outputs and on the attention coefficients.
        conv: ``"gatv2"`` (default; edge attributes enter the attention logits only) or
            ``"transformer"`` (PyG ``TransformerConv``: edge attributes also enter the
            messages, :math:`m_{ij} = \alpha_{ij}(W_v h_j + W_e e_{ij})`, plus a root weight
            instead of self-loops) — an option for relation-heavy data.

    Shapes:
        - x: ``N×F``; edge_index: ``2×E``; edge_attr: ``E×G`` (or ``None``)
        - output: ``N×D``
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        edge_features: int = 0,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        conv: str = "gatv2",
    ) -> None:
        super().__init__()
        if conv not in ("gatv2", "transformer"):
            raise ValueError(f"unknown conv {conv!r}; use 'gatv2' or 'transformer'")
        self.conv_type = conv
        if hidden % heads:
            raise ValueError(f"hidden {hidden} must be divisible by heads {heads}")
        self.edge_features = int(edge_features)
        self.input_norm = nn.LayerNorm(in_features)
        self.input_proj = nn.Linear(in_features, hidden)
        edge_dim = self.edge_features if self.edge_features > 0 else None
        self.convs = nn.ModuleList(
            TransformerConv(
                hidden,
                hidden // heads,
                heads=heads,
                concat=True,
                dropout=dropout,
                edge_dim=edge_dim,
                root_weight=True,
            )
            if conv == "transformer"
            else GATv2Conv(
                hidden,
                hidden // heads,
                heads=heads,
                concat=True,
                dropout=dropout,
                edge_dim=edge_dim,
                add_self_loops=True,
                fill_value="mean",
                residual=False,
            )
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.act = nn.GELU()

    def reset_parameters(self) -> None:
        self.input_norm.reset_parameters()
        self.input_proj.reset_parameters()
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.reset_parameters()
            norm.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Encode nodes.

        Args:
            x: node features ``N×F``.
            edge_index: ``2×E`` (source, target), may be empty.
            edge_attr: ``E×G`` or ``None``.
            return_attention: also return, per layer, ``(edge_index with self-loops,
                attention E'×heads)`` (for visualisation).
        """
        h = self.input_proj(self.input_norm(x))
        if self.edge_features == 0:
            edge_attr = None
        elif edge_attr is None:
            edge_attr = x.new_zeros(edge_index.shape[1], self.edge_features)
        attentions: list[tuple[Tensor, Tensor]] = []
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if return_attention:
                out, (ei, alpha) = conv(h, edge_index, edge_attr, return_attention_weights=True)
                attentions.append((ei, alpha))
            else:
                out = conv(h, edge_index, edge_attr)
            h = norm(h + self.dropout(self.act(out)))
        if return_attention:
            return h, attentions
        return h


def empty_edges(device: torch.device | None = None) -> Tensor:
    """A ``2×0`` edge index (a graph without edges)."""
    return torch.zeros(2, 0, dtype=torch.long, device=device)
