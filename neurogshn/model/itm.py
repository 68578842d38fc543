r"""Image-text matching (ITM) head: a cross-encoder over caption tokens and scene-graph nodes.

Head (:class:`ITMHead`, BLIP-style fusion, Li et al. 2022; blocks in
:mod:`neurogshn.model.crossmodal`): the caption's token embeddings plus a learned token-index
embedding (``token_position``; without it word order is nearly invisible to the head, see that
module) go through ``itm_layers`` pre-norm fusion blocks, each

.. math::
    h \leftarrow h + \mathrm{SA}(\mathrm{LN}(h)) \;[\text{if self\_attention}],\quad
    h \leftarrow h + \mathrm{CA}(\mathrm{LN}(h), \mathrm{LN}(\tilde V)),\quad
    h \leftarrow h + \mathrm{FFN}(\mathrm{LN}(h))

where the nodes the tokens cross-attend to carry their position (if ``node_position``):
:math:`\tilde V_n = V'_n + W_p\,\phi(p_n)`, :math:`p_n \in [0,1]^2` the node centroid
(``graphs.pos``) and :math:`\phi(p) = [p, \sin(2^k\pi p), \cos(2^k\pi p)]_{k<K}` Fourier
features. The masked mean of the final token states goes through a linear classifier with two
logits (no match / match); the *match score* of a pair is ``logit[1] - logit[0]``.

Why both parts: to tell "a red circle left of a blue square" from its relation-swapped twin a
token must fetch the *position* of the node it names (cross-attention to position-carrying
nodes), and the tokens must then *compare* what they fetched (self-attention after the
cross-attention). A single cross-attention block followed by mean pooling can do neither; it
aligns objects but stays at chance on relations (docs/model.md, "Relational matching").

The pairs it is trained on and the loss are in :mod:`neurogshn.losses.itm`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurogshn.model.crossmodal import CrossModalEncoder
from neurogshn.model.grounded_relation import GroundedRelationScore
from neurogshn.model.mlm import MaskedTokenHead


class ITMHead(CrossModalEncoder):
    """Cross-encoder matching head (see module docstring): a
    :class:`~neurogshn.model.crossmodal.CrossModalEncoder`, a final LayerNorm, the masked mean
    of the token states and a 2-way classifier (no match / match); optionally a masked-token
    head over the text model's vocabulary (:mod:`neurogshn.model.mlm`) on the same states, and
    the learned null image its text-only prior reads.

    Args:
        dim: embedding size ``D``.
        heads: attention heads.
        layers: fusion blocks.
        dropout: dropout.
        node_position: add a learned encoding of the node centroids to the nodes (then
            ``node_pos`` is required).
        self_attention: token self-attention in every block.
        token_position: add a learned token-index embedding to the caption tokens.
        max_tokens: positions of that embedding (at least the tokenizer's length).
        attention_sink: every cross-attention also attends to a learned null node, which
            lets the head count (:mod:`neurogshn.model.crossmodal`).
        vocab_size: the text model's vocabulary ``V`` (0: no masked-token head).
        word_dim: the text model's word-embedding size ``H`` (with ``vocab_size``).
        relative_positions: ``K > 0``: a learned bias by token offset up to ``K`` in the
            token self-attention (:class:`~neurogshn.model.positions.RelativePositionBias`).
        grounded_geometry: ``K > 0``: from the second block on, the token self-attention
            adds where the other tokens' referents lie, by token offset up to ``K``
            (:class:`~neurogshn.model.positions.GroundedGeometry`).
        grounded_relation: ``τ > 0``: the match logit adds the relation term of
            :class:`~neurogshn.model.grounded_relation.GroundedRelationScore` with window
            ``τ`` tokens (then ``word_states`` of width ``word_dim`` and ``node_pos`` are
            required); 0: off.

    Shapes:
        - tokens ``P×L×D``, token_mask ``P×L`` (True = real), nodes ``P×N×D``,
          node_mask ``P×N``, node_pos ``P×N×2``, word_states ``P×L×H`` → logits ``P×2``
          (and, with ``return_attention``, the first block's cross-attention ``P×L×N``)
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
        vocab_size: int = 0,
        word_dim: int = 0,
        relative_positions: int = 0,
        grounded_geometry: int = 0,
        grounded_relation: float = 0.0,
    ) -> None:
        super().__init__(
            dim,
            heads,
            layers,
            dropout,
            node_position,
            self_attention,
            token_position,
            max_tokens,
            attention_sink,
            relative_positions,
            grounded_geometry,
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, 2)
        self.token_head = MaskedTokenHead(dim, word_dim, vocab_size) if vocab_size > 0 else None
        self.null_image = nn.Parameter(0.02 * torch.randn(dim)) if vocab_size > 0 else None
        self.relation = None
        if grounded_relation > 0:
            if word_dim <= 0:
                raise ValueError("grounded_relation needs word_dim (the text model's width)")
            self.relation = GroundedRelationScore(word_dim, grounded_relation)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.norm.reset_parameters()
        self.classifier.reset_parameters()
        if self.token_head is not None:
            self.token_head.reset_parameters()
        if self.null_image is not None:
            nn.init.normal_(self.null_image, std=0.02)
        if self.relation is not None:
            self.relation.reset_parameters()

    def token_states(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
    ) -> Tensor:
        """The final (normalised) cross-modal token states ``P×L×D``."""
        return self.encode(tokens, token_mask, nodes, node_mask, node_pos, False)[0]

    def encode(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
        return_attention: bool = True,
    ) -> tuple[Tensor, list[Tensor]]:
        """The final (normalised) token states ``P×L×D`` and, with ``return_attention`` (or
        grounded geometry), every block's cross-attention to the nodes ``P×L×N`` (without
        dropout; see :func:`~neurogshn.model.crossmodal.attention_weights`)."""
        h, attentions = CrossModalEncoder.forward(
            self, tokens, token_mask, nodes, node_mask, node_pos, return_attention
        )
        return self.norm(h), attentions

    def null_nodes(self, count: int, with_pos: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """``count`` copies of the null image: nodes ``count×1×D``, mask ``count×1`` and, when
        ``with_pos``, centroids ``count×1×2`` at the image centre."""
        if self.null_image is None:
            raise ValueError("this ITM head has no null image (no masked-token head)")
        nodes = self.null_image.expand(count, 1, -1)
        mask = torch.ones(count, 1, dtype=torch.bool, device=nodes.device)
        pos = nodes.new_full((count, 1, 2), 0.5) if with_pos else None
        return nodes, mask, pos

    def forward(  # type: ignore[override]
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
        return_attention: bool = False,
        word_states: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        relation = self.relation is not None
        if relation and (word_states is None or node_pos is None):
            raise ValueError(
                "the grounded relation term (itm_grounded_relation) needs word_states (the "
                "text encoding's frozen token states) and node_pos"
            )
        h, attentions = super().forward(
            tokens, token_mask, nodes, node_mask, node_pos, return_attention, relation
        )
        h = self.norm(h)
        m = token_mask.bool().unsqueeze(-1).to(h.dtype)
        logits = self.classifier((h * m).sum(1) / m.sum(1).clamp_min(1.0))
        if self.relation is not None:
            s = self.relation(word_states, token_mask.bool(), attentions[0], node_pos)
            logits = logits + torch.stack([torch.zeros_like(s), s], dim=-1).to(logits.dtype)
        if return_attention:
            return logits, attentions[0]
        return logits

    def score(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
        word_states: Tensor | None = None,
    ) -> Tensor:
        """Match score ``logit[match] - logit[no match]`` of each pair (``P``)."""
        logits = self(tokens, token_mask, nodes, node_mask, node_pos, False, word_states)
        return logits[:, 1] - logits[:, 0]
