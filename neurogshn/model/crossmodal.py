r"""Cross-modal fusion blocks: caption tokens attend to scene-graph nodes.

Shared by the ITM head (:mod:`neurogshn.losses.itm`) and the task heads
(:mod:`neurogshn.tasks.heads`). A stack of pre-norm fusion blocks (BLIP, Li et al. 2022), each

.. math::
    h \leftarrow h + \mathrm{SA}(\mathrm{LN}(h)) \;[\text{if self\_attention}],\quad
    h \leftarrow h + \mathrm{CA}(\mathrm{LN}(h), \mathrm{LN}(\tilde V)),\quad
    h \leftarrow h + \mathrm{FFN}(\mathrm{LN}(h))

reads the token states :math:`h^{(0)}_t = x_t + P_t` (``x`` the text encoder's token
embeddings, :math:`P_t` a learned embedding of the token's index, if ``token_position``) and the
nodes :math:`\tilde V_n = V'_n + W_p\,\phi(p_n)` (node centroid :math:`p_n \in [0,1]^2`,
:math:`\phi(p) = [p, \sin(2^k\pi p), \cos(2^k\pi p)]_{k<K}`, if ``node_position``).

Why the token positions: the text encoder's projected token embeddings barely carry word order
(measured on the benchmark's captions: the same word at another place of the relation-swapped
twin has cosine 0.993 with itself, docs/model.md "Relational matching"), and attention is
permutation-equivariant, so without :math:`P_t` a caption and its relation- or attribute-swapped
twin reach the head as almost the same *set* of vectors and score alike.

With ``attention_sink``, each cross-attention also attends to a learned key and value of its
own (``nn.MultiheadAttention(add_bias_kv=True)``), a *null node* :math:`(k_0, v_0)`:

.. math::
    \mathrm{CA}(q) = \frac{e^{q\cdot k_0}\, v_0 + \sum_n e^{q\cdot k_n} v_n}
                          {e^{q\cdot k_0} + \sum_n e^{q\cdot k_n}}.

Why: softmax attention over the nodes alone is invariant to how many there are (four equal
nodes give the same output as two), so a cross-encoder cannot count; with the null node the
mass on :math:`n` alike nodes, :math:`n e^{a} / (n e^{a} + e^{b})`, grows with :math:`n`
(Zhang et al., ICLR 2018, on counting with attention). Measured on the benchmark: without it
the ITM head tells "there are four objects" from "there are five objects" for 41–46 % of the
captions, no better than chance (docs/results.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neurogshn.model.positions import (
    GroundedGeometry,
    NodePositionEncoding,
    RelativePositionBias,
    TokenPositionEmbedding,
    grounded_centroids,
)


class CrossAttentionBlock(nn.Module):
    r"""Pre-norm fusion block: optional token self-attention, cross-attention of the tokens
    ``h`` to the nodes ``V``, feed-forward (see module docstring).

    Args:
        dim: embedding size ``D``.
        heads: attention heads.
        dropout: dropout.
        self_attention: add the token self-attention sub-layer (BLIP); without it the tokens
            never exchange what they fetched from the nodes.
        attention_sink: the cross-attention also attends to a learned null node (see the
            module docstring).
        relative_positions: with ``self_attention``, ``K > 0`` adds a
            :class:`RelativePositionBias` over offsets up to ``K`` to its logits.
        grounded_geometry: with ``self_attention``, ``K > 0`` adds
            :class:`GroundedGeometry` over offsets up to ``K`` to its output (used when the
            caller passes the previous block's groundings).

    Shapes:
        - h ``P×L×D``, token_mask ``P×L`` (True = real), nodes ``P×N×D``, node_mask ``P×N``
        - output ``P×L×D`` and, with ``need_attention``, the cross-attention weights averaged
          over heads ``P×L×N`` (rows sum to 1 over the real nodes; to less with a sink, whose
          share is left out)
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        self_attention: bool = False,
        attention_sink: bool = False,
        relative_positions: int = 0,
        grounded_geometry: int = 0,
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(
            dim, heads, dropout=dropout, batch_first=True, add_bias_kv=attention_sink
        )
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.self_attention = bool(self_attention)
        if self.self_attention:
            self.norm_self = nn.LayerNorm(dim)
            self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.relative = (
            RelativePositionBias(heads, relative_positions)
            if self.self_attention and relative_positions > 0
            else None
        )
        self.geometry = (
            GroundedGeometry(dim, grounded_geometry)
            if self.self_attention and grounded_geometry > 0
            else None
        )

    def reset_parameters(self) -> None:
        for m in (self.norm_q, self.norm_kv, self.norm_ff, self.ff[0], self.ff[3]):
            m.reset_parameters()
        self.attn._reset_parameters()
        if self.self_attention:
            self.norm_self.reset_parameters()
            self.self_attn._reset_parameters()
        for m in (self.relative, self.geometry):
            if m is not None:
                m.reset_parameters()

    def self_attention_mask(self, token_mask: Tensor, dtype: torch.dtype) -> Tensor:
        r"""Additive mask of the token self-attention: the relative-position bias, and
        :math:`-\infty` at padded keys.

        Shapes:
            token_mask ``P×L`` → ``(P·H)×L×L``
        """
        p, length = token_mask.shape
        heads = self.self_attn.num_heads
        pad = torch.zeros(p, length, dtype=dtype, device=token_mask.device)
        pad = pad.masked_fill(~token_mask, float("-inf"))
        mask = pad[:, None, None, :].expand(p, heads, length, length)
        if self.relative is not None:
            mask = mask + self.relative(length).to(dtype)[None]
        return mask.reshape(-1, length, length)

    def token_self_attention(
        self, q: Tensor, token_mask: Tensor, grounding: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """The self-attention sub-layer's output for normalised tokens ``q`` ``P×L×D``: with
        a relative bias, with the grounded geometry of ``grounding`` (centroids ``P×L×2``,
        mass ``P×L``, from the previous block) when this block has it, else plain."""
        if self.geometry is None or grounding is None:
            if self.relative is None:
                a, _ = self.self_attn(q, q, q, key_padding_mask=~token_mask, need_weights=False)
            else:
                mask = self.self_attention_mask(token_mask, q.dtype)
                a, _ = self.self_attn(q, q, q, attn_mask=mask, need_weights=False)
            return a
        sa = self.self_attn
        p, length, dim = q.shape
        heads = sa.num_heads
        qkv = nn.functional.linear(q, sa.in_proj_weight, sa.in_proj_bias)
        split = [t.view(p, length, heads, dim // heads).transpose(1, 2) for t in qkv.chunk(3, -1)]
        scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(dim // heads)
        scores = scores + self.self_attention_mask(token_mask, q.dtype).view(p, heads, length, -1)
        probs = scores.softmax(-1)
        mixed = nn.functional.dropout(probs, sa.dropout, self.training) @ split[2]
        a = sa.out_proj(mixed.transpose(1, 2).reshape(p, length, dim))
        return a + self.geometry(probs.mean(1), *grounding)

    def forward(
        self,
        h: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        need_attention: bool = False,
        grounding: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if self.self_attention:
            a = self.token_self_attention(self.norm_self(h), token_mask, grounding)
            h = h + self.dropout(a)
        kv = self.norm_kv(nodes)
        q = self.norm_q(h)
        a, _ = self.attn(q, kv, kv, key_padding_mask=~node_mask, need_weights=False)
        weights = attention_weights(self.attn, q, kv, node_mask) if need_attention else None
        h = h + self.dropout(a)
        return h + self.dropout(self.ff(self.norm_ff(h))), weights


def attention_weights(
    attn: nn.MultiheadAttention, query: Tensor, key: Tensor, key_mask: Tensor
) -> Tensor:
    r"""The attention probabilities of a batch-first ``attn`` *without* its dropout, averaged
    over heads: :math:`\frac1H\sum_h \operatorname{softmax}(q_h k_h^\top / \sqrt{d_h})`
    (``nn.MultiheadAttention`` returns them after dropout in training mode, which would make
    a loss on them noisy). With a learned null key (``add_bias_kv``) it takes part in the
    softmax and its column is dropped, so a row sums to less than 1.

    Shapes:
        - query ``P×L×D``, key ``P×N×D``, key_mask ``P×N`` (True = real) → ``P×L×N``
    """
    d, heads = attn.embed_dim, attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = nn.functional.linear(query, w[:d], None if b is None else b[:d])
    k = nn.functional.linear(key, w[d : 2 * d], None if b is None else b[d : 2 * d])
    p, length, n = q.shape[0], q.shape[1], k.shape[1]
    q = q.view(p, length, heads, d // heads).transpose(1, 2)
    k = k.view(p, n, heads, d // heads).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
    if attn.bias_k is None:
        return scores.softmax(-1).mean(1)
    sink = attn.bias_k.reshape(heads, d // heads).to(q.dtype)  # already in key space
    sink_scores = (q * sink[None, :, None, :]).sum(-1, keepdim=True) / math.sqrt(d // heads)
    return torch.cat([scores, sink_scores], dim=-1).softmax(-1)[..., :n].mean(1)


class CrossModalEncoder(nn.Module):
    """Token positions + node positions + a stack of :class:`CrossAttentionBlock`.

    The attribute names (``layers``, ``position``, ``token_position``) are the state-dict keys
    of the heads that hold one (checkpoints depend on them).

    Args:
        dim: embedding size ``D``.
        heads: attention heads.
        layers: fusion blocks.
        dropout: dropout.
        node_position: add a learned encoding of the node centroids to the nodes (then
            ``node_pos`` is required).
        self_attention: token self-attention in every block.
        token_position: add a learned token-index embedding to the tokens.
        max_tokens: positions of the token embedding.
        attention_sink: every cross-attention also attends to a learned null node.
        relative_positions: ``K > 0``: the token self-attention adds a learned bias by
            token offset up to ``K`` (:class:`RelativePositionBias`).
        grounded_geometry: ``K > 0``: from the second block on, the token self-attention
            adds where the other tokens' referents lie, by offset up to ``K``
            (:class:`GroundedGeometry`; needs ``node_pos``).

    Shapes:
        - tokens ``P×L×D``, token_mask ``P×L``, nodes ``P×N×D``, node_mask ``P×N``,
          node_pos ``P×N×2`` → ``P×L×D`` (+ per layer ``P×L×N`` attention if requested)
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        node_position: bool = False,
        self_attention: bool = False,
        token_position: bool = False,
        max_tokens: int = 64,
        attention_sink: bool = False,
        relative_positions: int = 0,
        grounded_geometry: int = 0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrossAttentionBlock(
                dim,
                heads,
                dropout,
                self_attention,
                attention_sink,
                relative_positions,
                grounded_geometry if k > 0 else 0,
            )
            for k in range(layers)
        )
        self.position = NodePositionEncoding(dim) if node_position else None
        self.token_position = TokenPositionEmbedding(dim, max_tokens) if token_position else None

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()
        for m in (self.position, self.token_position):
            if m is not None:
                m.reset_parameters()

    def placed_nodes(self, nodes: Tensor, node_pos: Tensor | None) -> Tensor:
        """The nodes the tokens attend to: with ``node_position``, each plus the encoding of
        its centroid (``nodes`` unchanged without it).

        Shapes:
            nodes ``P×N×D``, node_pos ``P×N×2`` → ``P×N×D``
        """
        if self.position is None:
            return nodes
        if node_pos is None:
            raise ValueError(
                "this cross-modal head encodes node positions (node_position=True; for the "
                "ITM head the config's itm_node_position) and needs node_pos (the graphs' "
                "`pos` centroids); score image-text pairs with GSHN.match_scores"
            )
        return nodes + self.position(node_pos.to(nodes.dtype))

    def forward(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
        return_attention: bool = False,
        first_attention: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:
        """Token states and the cross-attention weights of every block (``return_attention``),
        of the first block only (``first_attention``) or of the blocks the grounded geometry
        reads."""
        nodes = self.placed_nodes(nodes, node_pos)
        h = tokens
        if self.token_position is not None:
            h = h + self.token_position(h.shape[1]).to(h.dtype)
        token_mask = token_mask.bool()
        node_mask = node_mask.bool()
        geometry = any(layer.geometry is not None for layer in self.layers)
        if geometry and node_pos is None:
            raise ValueError("grounded geometry (itm_grounded_geometry) needs node_pos")
        attentions: list[Tensor] = []
        grounding = None
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            # the geometry reads each block's cross-attention in the next block only
            need = return_attention or (geometry and k < last) or (first_attention and k == 0)
            h, weights = layer(h, token_mask, nodes, node_mask, need, grounding)
            if weights is not None:
                attentions.append(weights)
                if geometry:
                    grounding = grounded_centroids(weights, node_pos)  # type: ignore[arg-type]
        return h, attentions
