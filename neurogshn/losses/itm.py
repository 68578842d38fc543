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
        attention_sink: bool = False,
        vocab_size: int = 0,
        word_dim: int = 0,
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
        self.token_head = MaskedTokenHead(dim, word_dim, vocab_size) if vocab_size > 0 else None
        self.null_image = nn.Parameter(0.02 * torch.randn(dim)) if vocab_size > 0 else None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.norm.reset_parameters()
        self.classifier.reset_parameters()
        if self.token_head is not None:
            self.token_head.reset_parameters()
        if self.null_image is not None:
            nn.init.normal_(self.null_image, std=0.02)

    def token_states(
        self,
        tokens: Tensor,
        token_mask: Tensor,
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None = None,
    ) -> Tensor:
        """The final (normalised) cross-modal token states ``P×L×D``."""
        h, _ = CrossModalEncoder.forward(self, tokens, token_mask, nodes, node_mask, node_pos)
        return self.norm(h)

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
