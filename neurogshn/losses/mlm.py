r"""Image-conditioned masked language modelling (MLM) on the ITM head's cross-encoder.

Per caption of the batch ``itm_mlm_copies`` masked copies; in each,
:math:`k = \max(1, \mathrm{round}(\rho\, n))` of its ``n`` words (``rho`` =
``itm_mlm_mask_rate``) are drawn without replacement with probability

.. math::
    P(w) \propto \mathrm{idf}(w) + \epsilon

(:class:`~neurogshn.model.mlm.TokenStatistics`; :math:`\epsilon = 0.1` keeps every word
possible), and each is replaced by one mask token per word piece. The masked copies go through
the text encoder (not memoised: random masks rarely repeat) and the ITM head's cross-encoder
with their own image, or, for a fraction ``itm_mlm_image_dropout`` of them (drawn at random,
at least one and not all), with the learned null image (which trains the text-only prior
of :meth:`~neurogshn.model.gshn.GSHN.word_pmi`).

.. math::
    \mathcal{L}_{MLM} = -\frac{1}{M}\sum_{m} \log p(x_m \mid \text{image or null},\ \tilde t)

over the ``M`` hidden pieces, with the masked-token head tied to the text model's word
embeddings (:class:`~neurogshn.model.mlm.MaskedTokenHead`). Draws use torch's global RNG, so
seeded runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from neurogshn.model.mlm import CaptionWord, TokenStatistics, caption_words, masked_captions

#: Floor added to every word's inverse document frequency when drawing the words to mask.
MASK_WEIGHT_FLOOR = 0.1


class MLMLoss(NamedTuple):
    """Masked language modelling on a batch: the cross-entropy over the hidden pieces and the
    detached top-1 accuracy on the pieces read with the image (``accuracy``) and with the null
    image (``prior_accuracy``, ``nan`` when none was dropped)."""

    loss: Tensor
    accuracy: Tensor
    prior_accuracy: Tensor


def draw_masked_words(
    words: Sequence[Sequence[CaptionWord]],
    statistics: TokenStatistics,
    rate: float,
    copies: int = 1,
) -> list[list[list[CaptionWord]]]:
    """For each caption ``copies`` groups of words to mask, each drawn independently (see
    module docstring); a caption without words gets none."""
    out: list[list[list[CaptionWord]]] = []
    flat = statistics.word_stats([w for ws in words for w in ws])
    for ws in words:
        here, flat = flat[: len(ws)], flat[len(ws) :]
        if not ws:
            out.append([])
            continue
        k = max(1, round(rate * len(ws)))
        weights = torch.tensor([w + MASK_WEIGHT_FLOOR for w, _ in here], dtype=torch.float64)
        groups = []
        for _ in range(copies):
            picked = torch.multinomial(weights, min(k, len(ws)), replacement=False).tolist()
            groups.append([ws[i] for i in sorted(picked)])
        out.append(groups)
    return out


def mlm_loss(
    model: Any,
    captions: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
) -> MLMLoss | None:
    """MLM on ``captions`` with their images (dense ``nodes`` ``B×N×D``, ``node_mask`` ``B×N``,
    ``node_pos`` ``B×N×2`` or ``None``); ``None`` when nothing could be masked."""
    te, head = model.text_encoder, model.itm_head
    c = model.config
    words = caption_words(te.tokenizer, list(captions), te.max_length)
    groups = draw_masked_words(words, model.token_statistics, c.itm_mlm_mask_rate, c.itm_mlm_copies)
    masked = masked_captions(te.tokenizer, list(captions), groups, te.max_length, nodes.device)
    if not len(masked):
        return None
    enc = te(masked.texts, cache=False)
    rows = masked.rows
    n, m = nodes[rows], node_mask[rows]
    p = None if node_pos is None else node_pos[rows]
    # a fixed number of rows read the null image (every process of a data-parallel run then
    # logs the same diagnostics)
    n_drop = round(c.itm_mlm_image_dropout * len(rows))
    if c.itm_mlm_image_dropout > 0 and len(rows) > 1:
        n_drop = min(max(n_drop, 1), len(rows) - 1)
    drop = torch.zeros(len(rows), dtype=torch.bool, device=nodes.device)
    drop[torch.randperm(len(rows), device=nodes.device)[:n_drop]] = True
    if bool(drop.any()):
        null, _, _ = head.null_nodes(len(rows), False)
        null_full = torch.cat([null, n.new_zeros(len(rows), n.shape[1] - 1, n.shape[2])], 1)
        null_mask = torch.zeros_like(m)
        null_mask[:, 0] = True
        n = torch.where(drop[:, None, None], null_full.to(n.dtype), n)
        m = torch.where(drop[:, None], null_mask, m)
        if p is not None:
            p = torch.where(drop[:, None, None], p.new_full(p.shape, 0.5), p)
    states = head.token_states(enc.token_embeds, enc.attention_mask, n, m, p)
    logits = head.token_head(
        states[masked.piece_row, masked.piece_index], te.word_embeddings
    ).float()
    loss = F.cross_entropy(logits, masked.targets)
    with torch.no_grad():
        right = (logits.argmax(-1) == masked.targets).float()
        dropped = drop[masked.piece_row]
        accuracy = right[~dropped].mean() if bool((~dropped).any()) else right.new_tensor(0.0)
        prior = right[dropped].mean() if bool(dropped.any()) else right.new_tensor(float("nan"))
    return MLMLoss(loss, accuracy, prior)
