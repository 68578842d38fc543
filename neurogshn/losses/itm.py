r"""Image-text matching (ITM) loss: the cross-encoder (:class:`~neurogshn.model.itm.ITMHead`)
classifies image-caption pairs as match / no match.

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

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from neurogshn.model.itm import ITMHead


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
    word_states: Tensor | None = None,
    negative_word_states: Tensor | None = None,
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
        word_states: the captions' frozen text states ``B×L×H`` (needed by a head with the
            grounded relation term); negative_word_states ``K×L'×H`` those of the data hard
            negatives.

    Returns:
        :class:`ITMLoss` (scalar loss, accuracy of the head on these pairs, attention).
    """
    b = nodes.shape[0]
    words = word_states is not None
    img_idx = [torch.arange(b, device=nodes.device)]
    txt_tok, txt_mask = [tokens], [token_mask]
    txt_words = [word_states] if words else []
    labels = [torch.ones(b, dtype=torch.long, device=nodes.device)]

    def add_texts(rows: Tensor) -> None:
        txt_tok.append(tokens[rows])
        txt_mask.append(token_mask[rows])
        if words:
            txt_words.append(word_states[rows])  # type: ignore[index]

    if similarity is not None and b >= 2:
        sim = similarity.detach().float()
        neg_txt = _sample_negatives(sim, same_caption)
        rows = (neg_txt >= 0).nonzero().squeeze(-1)
        img_idx.append(rows)
        add_texts(neg_txt[rows])
        labels.append(torch.zeros(rows.numel(), dtype=torch.long, device=nodes.device))
        neg_img = _sample_negatives(sim.T, same_caption.T)
        cols = (neg_img >= 0).nonzero().squeeze(-1)
        img_idx.append(neg_img[cols])
        add_texts(cols)
        labels.append(torch.zeros(cols.numel(), dtype=torch.long, device=nodes.device))
    if negative_tokens is not None and negative_tokens.shape[0]:
        if words and negative_word_states is None:
            raise ValueError("word_states given for the captions but not for the hard negatives")
        length = tokens.shape[1]
        nl = negative_tokens.shape[1]
        if nl < length:
            negative_tokens = F.pad(negative_tokens, (0, 0, 0, length - nl))
            negative_token_mask = F.pad(negative_token_mask, (0, length - nl), value=False)
            if words:
                negative_word_states = F.pad(negative_word_states, (0, 0, 0, length - nl))
        elif nl > length:
            txt_tok = [F.pad(t, (0, 0, 0, nl - length)) for t in txt_tok]
            txt_mask = [F.pad(m, (0, nl - length), value=False) for m in txt_mask]
            txt_words = [F.pad(w, (0, 0, 0, nl - length)) for w in txt_words]
        img_idx.append(negative_owner)
        txt_tok.append(negative_tokens)
        txt_mask.append(negative_token_mask)
        if words:
            txt_words.append(negative_word_states)
        labels.append(torch.zeros(negative_owner.numel(), dtype=torch.long, device=nodes.device))
    idx = torch.cat(img_idx)
    pos = None if node_pos is None else node_pos[idx]
    inputs = (torch.cat(txt_tok), torch.cat(txt_mask), nodes[idx], node_mask[idx], pos)
    # the frozen word states only for a head with the grounded relation term
    extra = {"word_states": torch.cat(txt_words)} if words else {}
    attention = None
    if return_attention:
        logits, attention = head(*inputs, True, **extra)
        attention = attention[:b, : tokens.shape[1]]
    else:
        logits = head(*inputs, **extra)
    target = torch.cat(labels)
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(-1) == target).float().mean().detach()
    return ITMLoss(loss, acc, attention)
