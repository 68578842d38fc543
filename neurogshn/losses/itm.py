r"""Image-text matching (ITM): a cross-encoder over caption tokens and scene-graph nodes.

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

Pairs per batch of ``B`` images with captions:

- ``B`` positives: image ``i`` with its caption ``i``;
- the data's hard negatives: image ``i`` with its caption's relation-/attribute-swapped or
  object-replaced twin (these are what teach relations and attribute binding);
- optionally (``itm_batch_negatives``, ALBEF-style mining, Li et al. 2021) ``B`` in-batch hard
  negative captions: for image ``i`` a caption ``j`` sampled with probability
  :math:`\propto \exp(u_i^\top c_j / 0.05)` over captions whose text differs from caption ``i``,
  and ``B`` in-batch hard negative images likewise.

With ``return_attention`` the first block's cross-attention of the positive pairs is returned
for the phrase-grounding term (:mod:`neurogshn.losses.grounding`).

:math:`\mathcal{L}_{ITM}` is the cross-entropy over all pairs (with the data's negatives alone,
positives and negatives are balanced 1:1). Sampling uses torch's global RNG (seeded runs are
deterministic). Mining similarities are detached.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurogshn.model.crossmodal import CrossModalEncoder
from neurogshn.model.node_count import NodeCount
from neurogshn.model.relation_geometry import RelationGeometry


class ITMHead(CrossModalEncoder):
    """Cross-encoder matching head (see module docstring): a
    :class:`~neurogshn.model.crossmodal.CrossModalEncoder`, a final LayerNorm, the masked mean
    of the token states and a 2-way classifier (no match / match).

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
        relation_classes: size of the masked-relation classifier (0: none).
        concept_classes: size of the masked-concept classifier (0: none).
        attention_sink: every cross-attention also attends to a learned null node, which
            lets the head count (:mod:`neurogshn.model.crossmodal`).
        relation_geometry: add to the relation classifier a classifier on the displacement
            between two pointed-at node centroids (:mod:`neurogshn.model.relation_geometry`;
            needs ``relation_classes`` and ``node_pos``).
        concept_count: add to the concept classifier a classifier on a soft count of the
            nodes the mask selects (:mod:`neurogshn.model.node_count`; needs
            ``concept_classes``).

    Shapes:
        - tokens ``P×L×D``, token_mask ``P×L`` (True = real), nodes ``P×N×D``,
          node_mask ``P×N``, node_pos ``P×N×2`` → logits ``P×2`` (and, with
          ``return_attention``, the first block's cross-attention ``P×L×N``)
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
        relation_classes: int = 0,
        attention_sink: bool = False,
        concept_classes: int = 0,
        relation_geometry: bool = False,
        concept_count: bool = False,
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
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, 2)
        # masked relation prediction (neurogshn.losses.relation); absent when 0
        self.relation_head = nn.Linear(dim, relation_classes) if relation_classes > 0 else None
        # masked concept prediction (same module); absent when 0
        self.concept_head = nn.Linear(dim, concept_classes) if concept_classes > 0 else None
        if relation_geometry and relation_classes <= 0:
            raise ValueError("relation_geometry needs a relation classifier (relation_classes > 0)")
        self.relation_geometry = (
            RelationGeometry(dim, relation_classes) if relation_geometry else None
        )
        if concept_count and concept_classes <= 0:
            raise ValueError("concept_count needs a concept classifier (concept_classes > 0)")
        self.concept_count = NodeCount(dim, concept_classes) if concept_count else None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.norm.reset_parameters()
        self.classifier.reset_parameters()
        if self.relation_head is not None:
            self.relation_head.reset_parameters()
        if self.concept_head is not None:
            self.concept_head.reset_parameters()
        if self.relation_geometry is not None:
            self.relation_geometry.reset_parameters()
        if self.concept_count is not None:
            self.concept_count.reset_parameters()

    def _mask_states(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None,
        mask_index: Tensor,
    ) -> Tensor:
        h, _ = CrossModalEncoder.forward(self, tokens, token_mask, nodes, node_mask, node_pos)
        h = self.norm(h)
        rows = torch.arange(h.shape[0], device=h.device)
        return h[rows, mask_index]

    def relation_logits(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None,
        mask_index: Tensor,
        return_pointers: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Relation-class logits at each pair's masked position (masked relation prediction),
        plus, with ``relation_geometry``, the displacement classifier's logits.

        Shapes:
            tokens ``P×L×D`` … as :meth:`forward`; mask_index ``P`` (token index of the mask)
            → ``P×K``; with ``return_pointers`` also the subject/object pointers ``P×2×N``
            (``None`` without ``relation_geometry``).
        """
        if self.relation_head is None:
            raise ValueError("this ITM head has no relation classifier (relation_classes=0)")
        state = self._mask_states(tokens, token_mask, nodes, node_mask, node_pos, mask_index)
        logits = self.relation_head(state)
        pointers = None
        if self.relation_geometry is not None:
            if node_pos is None:
                raise ValueError("relation_geometry needs node_pos (the graphs' `pos` centroids)")
            placed = self.placed_nodes(nodes, node_pos)
            geometric, pointers = self.relation_geometry(state, placed, node_mask, node_pos)
            logits = logits + geometric
        return (logits, pointers) if return_pointers else logits

    def concept_logits(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None,
        mask_index: Tensor,
        return_counts: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Concept-class logits at each pair's masked position (masked concept prediction),
        plus, with ``concept_count``, the node-count classifier's logits.

        Shapes:
            as :meth:`relation_logits` → ``P×C``; with ``return_counts`` also the soft node
            counts ``P`` (``None`` without ``concept_count``).
        """
        if self.concept_head is None:
            raise ValueError("this ITM head has no concept classifier (concept_classes=0)")
        state = self._mask_states(tokens, token_mask, nodes, node_mask, node_pos, mask_index)
        logits = self.concept_head(state)
        counts = None
        if self.concept_count is not None:
            placed = self.placed_nodes(nodes, node_pos)
            counted, counts = self.concept_count(state, placed, node_mask)
            logits = logits + counted
        return (logits, counts) if return_counts else logits

    def forward(  # type: ignore[override]
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        h, attentions = super().forward(
            tokens, token_mask, nodes, node_mask, node_pos, return_attention
        )
        h = self.norm(h)
        m = token_mask.bool().unsqueeze(-1).to(h.dtype)
        logits = self.classifier((h * m).sum(1) / m.sum(1).clamp_min(1.0))
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
    ) -> Tensor:
        """Match score ``logit[match] - logit[no match]`` of each pair (``P``)."""
        logits = self(tokens, token_mask, nodes, node_mask, node_pos)
        return logits[:, 1] - logits[:, 0]


def _sample_negatives(sim: Tensor, forbidden: Tensor, temperature: float = 0.05) -> Tensor:
    """For each row, a column index sampled ∝ exp(sim/τ) among allowed columns (-1: none)."""
    logits = (sim / temperature).masked_fill(forbidden, float("-inf"))
    ok = ~forbidden.all(-1)
    out = torch.full((sim.shape[0],), -1, dtype=torch.long, device=sim.device)
    if bool(ok.any()):
        probs = torch.softmax(logits[ok], dim=-1)
        out[ok] = torch.multinomial(probs, 1).squeeze(-1)
    return out


class ITMLoss(NamedTuple):
    """What :func:`itm_loss` returns: the loss, the head's accuracy on the pairs (detached) and,
    with ``return_attention``, the first block's cross-attention of the ``B`` positive pairs
    (``B×L×N``, for the grounding term)."""

    loss: Tensor
    accuracy: Tensor
    attention: Tensor | None = None


def itm_loss(
    head: ITMHead,
    nodes: Tensor,
    node_mask: Tensor,
    tokens: Tensor,
    token_mask: Tensor,
    same_caption: Tensor,
    similarity: Tensor | None = None,
    negative_tokens: Tensor | None = None,
    negative_token_mask: Tensor | None = None,
    negative_owner: Tensor | None = None,
    node_pos: Tensor | None = None,
    return_attention: bool = False,
) -> ITMLoss:
    """ITM loss over positives, the data's hard negatives and (optionally) in-batch negatives.

    Args:
        head: the ITM head.
        nodes: dense node embeddings ``B×N×D``; node_mask ``B×N``.
        tokens: caption token embeddings ``B×L×D``; token_mask ``B×L`` (attention mask).
        same_caption: ``B×B`` bool, caption ``i`` and caption ``j`` are the same text.
        similarity: ``B×B`` image-caption similarity for in-batch mining (``None``: no mining).
        negative_tokens: ``K×L'×D`` token embeddings of data hard negatives (or ``None``).
        negative_token_mask: ``K×L'``.
        negative_owner: ``K`` image index of each data hard negative.
        node_pos: dense node centroids ``B×N×2`` (needed when the head encodes positions).
        return_attention: also return the positives' first-block cross-attention.

    Returns:
        :class:`ITMLoss` (scalar loss, accuracy of the head on these pairs, attention).
    """
    b = nodes.shape[0]
    img_idx = [torch.arange(b, device=nodes.device)]
    txt_tok, txt_mask = [tokens], [token_mask]
    labels = [torch.ones(b, dtype=torch.long, device=nodes.device)]
    if similarity is not None and b >= 2:
        sim = similarity.detach().float()
        neg_txt = _sample_negatives(sim, same_caption)
        rows = (neg_txt >= 0).nonzero().squeeze(-1)
        img_idx.append(rows)
        txt_tok.append(tokens[neg_txt[rows]])
        txt_mask.append(token_mask[neg_txt[rows]])
        labels.append(torch.zeros(rows.numel(), dtype=torch.long, device=nodes.device))
        neg_img = _sample_negatives(sim.T, same_caption.T)
        cols = (neg_img >= 0).nonzero().squeeze(-1)
        img_idx.append(neg_img[cols])
        txt_tok.append(tokens[cols])
        txt_mask.append(token_mask[cols])
        labels.append(torch.zeros(cols.numel(), dtype=torch.long, device=nodes.device))
    if negative_tokens is not None and negative_tokens.shape[0]:
        length = tokens.shape[1]
        nl = negative_tokens.shape[1]
        if nl < length:
            negative_tokens = F.pad(negative_tokens, (0, 0, 0, length - nl))
            negative_token_mask = F.pad(negative_token_mask, (0, length - nl), value=False)
        elif nl > length:
            txt_tok = [F.pad(t, (0, 0, 0, nl - length)) for t in txt_tok]
            txt_mask = [F.pad(m, (0, nl - length), value=False) for m in txt_mask]
        img_idx.append(negative_owner)
        txt_tok.append(negative_tokens)
        txt_mask.append(negative_token_mask)
        labels.append(torch.zeros(negative_owner.numel(), dtype=torch.long, device=nodes.device))
    idx = torch.cat(img_idx)
    pos = None if node_pos is None else node_pos[idx]
    attention = None
    if return_attention:
        logits, attention = head(
            torch.cat(txt_tok), torch.cat(txt_mask), nodes[idx], node_mask[idx], pos, True
        )
        attention = attention[:b, : tokens.shape[1]]
    else:
        logits = head(torch.cat(txt_tok), torch.cat(txt_mask), nodes[idx], node_mask[idx], pos)
    target = torch.cat(labels)
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(-1) == target).float().mean().detach()
    return ITMLoss(loss, acc, attention)
