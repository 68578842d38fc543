r"""ITM re-ranking of retrieval candidates, and the pool normalisation of image → text scores.

The ALBEF / BLIP protocol: each query's ``K`` best candidates by the ITC cosine are scored by
the cross-encoder (:func:`itm_rerank`) and fused with the cosine; :func:`refuse_candidates`
re-fuses them for another ``K`` or weight without scoring again; :func:`caption_match_counts`
and :func:`pool_normalize_i2t` are the transductive image → text normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.tasks.encode import collate_graphs, model_device

#: weight w of the ITC logit in the fused match score ``ITM + w · τ⁻¹ · cos`` (re-ranking and
#: the ``fused`` hard-negative scorer); chosen on the validation split (docs/results.md)
FUSED_ITC_WEIGHT = 0.5


# re-ranked candidates are lifted by this offset above every cosine in [-1, 1]
_CANDIDATE_OFFSET = 1e4


@torch.no_grad()
def itm_rerank(
    model: nn.Module,
    graphs: Sequence[Any],
    texts: Sequence[str],
    similarity: Tensor,
    k: int,
    batch_size: int = 64,
    itc_weight: float = FUSED_ITC_WEIGHT,
    word_evidence: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Image-by-caption score matrices in which each query's ``k`` best candidates by
    ``similarity`` are re-ordered by

    .. math:: s = s_\text{ITM} + w \cdot \tau^{-1} \cos(v, t)

    with :math:`s_\text{ITM}` the model's ITM score (:meth:`GSHN.itm_scores`: the ITM logits
    and, with ``word_evidence``, the masked-LM word evidence, which costs one cross-encoder
    pass per scored word of each pair), :math:`\tau^{-1}` its ITC logit scale (1 without an
    ITC head) and ``w = itc_weight`` (0.5 chosen on the validation split, docs/results.md:
    the ITM score alone ranks 16 candidates worse than ITC does for text→image).

    One matrix per direction: in the image→text one each row's top-``k`` captions get their
    ITM score and rank above all other captions, which keep their ITC order below them; the
    text→image one does the same per column. Every image is encoded once; the (image,
    caption) pairs of both directions (deduplicated) are scored in batches of ``4×
    batch_size``.

    Shapes:
        graphs ``I``, texts ``C``, similarity ``I×C`` → two ``I×C`` tensors (CPU float32).
    """
    sim = similarity.float().cpu()
    n_img, n_txt = sim.shape
    k_row, k_col = min(k, n_txt), min(k, n_img)
    rows_i2t = torch.arange(n_img).repeat_interleave(k_row)
    cols_i2t = sim.topk(k_row, dim=1).indices.reshape(-1)
    cols_t2i = torch.arange(n_txt).repeat_interleave(k_col)
    rows_t2i = sim.topk(k_col, dim=0).indices.T.reshape(-1)
    pairs = torch.unique(
        torch.stack([torch.cat([rows_i2t, rows_t2i]), torch.cat([cols_i2t, cols_t2i])], 1), dim=0
    )  # sorted by image row
    scores = torch.empty(len(pairs))
    scale = itc_logit_scale(model)
    dev = model_device(model)
    pair_batch = 4 * batch_size
    for start in range(0, n_img, batch_size):
        stop = min(start + batch_size, n_img)
        here = ((pairs[:, 0] >= start) & (pairs[:, 0] < stop)).nonzero().squeeze(1)
        if len(here) == 0:
            continue
        enc = model.encode_image(collate_graphs([graphs[i] for i in range(start, stop)]).to(dev))
        for chunk in here.split(pair_batch):
            rows, cols = pairs[chunk, 0] - start, pairs[chunk, 1]
            chunk_texts = [str(texts[int(c)]) for c in cols]
            scores[chunk] = (
                model.itm_scores(
                    enc.select(rows.to(dev)),
                    model.encode_text(chunk_texts),
                    chunk_texts if word_evidence else None,
                )
                .float()
                .cpu()
            )
    scores = scores + itc_weight * scale * sim[pairs[:, 0], pairs[:, 1]]
    # candidates above every non-candidate: ITC cosines lie in [-1, 1]
    scores = scores.clamp(-1e3, 1e3) + _CANDIDATE_OFFSET
    reranked = sim.clone()
    reranked[pairs[:, 0], pairs[:, 1]] = scores
    i2t, t2i = sim.clone(), sim.clone()
    i2t[rows_i2t, cols_i2t] = reranked[rows_i2t, cols_i2t]
    t2i[rows_t2i, cols_t2i] = reranked[rows_t2i, cols_t2i]
    return i2t, t2i


def refuse_candidates(
    itm_ranked: Tensor,
    similarity: Tensor,
    k: int,
    itc_weight: float,
    itc_scale: float,
    dim: int,
) -> Tensor:
    r"""Re-rank with fewer candidates or another ITC weight, without scoring pairs again.

    ``itm_ranked`` is one direction's matrix from :func:`itm_rerank` called with
    ``itc_weight=0`` and some ``k_max ≥ k`` (its candidates hold the ITM score plus an offset).
    Returns the matrix :func:`itm_rerank` would return for ``k`` and ``itc_weight``: each
    query's ``k`` best candidates by ``similarity`` scored
    :math:`s_\text{ITM} + w \cdot \tau^{-1} \cos`, above all other items.

    Args:
        itm_ranked: ``I×C`` from ``itm_rerank(..., k_max, itc_weight=0)`` (one direction).
        similarity: the ``I×C`` cosines that chose the candidates.
        k: candidates per query, at most the ``k_max`` of ``itm_ranked``.
        itc_weight: ``w``.
        itc_scale: :math:`\tau^{-1}` (:func:`itc_logit_scale`).
        dim: ``1`` for image→text (queries are rows), ``0`` for text→image.
    """
    sim = similarity.float().cpu()
    candidates = sim.topk(min(k, sim.shape[dim]), dim=dim).indices
    keep = torch.zeros_like(sim, dtype=torch.bool).scatter_(dim, candidates, True)
    if bool((itm_ranked[keep] < _CANDIDATE_OFFSET / 2).any()):
        raise ValueError(f"k={k} exceeds the candidates scored in itm_ranked")
    out = sim.clone()
    itm = itm_ranked[keep] - _CANDIDATE_OFFSET
    out[keep] = (itm + itc_weight * itc_scale * sim[keep]).clamp(-1e3, 1e3) + _CANDIDATE_OFFSET
    return out


#: ε in the pool normalisation ``− β · log(ε + n̂(c))`` (chosen on a 1,000-image validation
#: pool, docs/results.md); it keeps a caption that no candidate image matches finite
POOL_NORM_SMOOTHING = 0.5


def caption_match_counts(
    t2i: Tensor, similarity: Tensor, itc_weight: float, itc_scale: float
) -> Tensor:
    r"""How many evaluated images each caption matches, by the ITM head: for caption :math:`c`

    .. math:: \hat n(c) = \sum_{i \in \mathcal{K}(c)} \sigma\big(s_\text{ITM}(i, c)\big)

    over its re-ranked candidate images :math:`\mathcal{K}(c)` (its top ``K`` by ITC, which
    hold nearly every image a caption can be true of), with the ITM score recovered from the
    fused one as :math:`s - w \tau^{-1} \cos`.

    Args:
        t2i: the text→image matrix of :func:`itm_rerank` (or :func:`refuse_candidates`,
            ``dim=0``): candidates hold the fused score plus the candidate offset.
        similarity: the ``I×C`` cosines that chose the candidates.
        itc_weight: ``w`` used for ``t2i``.
        itc_scale: :math:`\tau^{-1}` used for ``t2i``.

    Shapes:
        ``I×C``, ``I×C`` → ``C``.
    """
    t2i = t2i.float().cpu()
    candidate = t2i > _CANDIDATE_OFFSET / 2
    itm = t2i - _CANDIDATE_OFFSET - itc_weight * itc_scale * similarity.float().cpu()
    return torch.where(candidate, torch.sigmoid(itm), torch.zeros_like(itm)).sum(dim=0)


def pool_normalize_i2t(
    i2t: Tensor, counts: Tensor, weight: float, smoothing: float = POOL_NORM_SMOOTHING
) -> Tensor:
    r"""Image→text scores lowered for captions that many evaluated images match:

    .. math:: s'(i, c) = s(i, c) - \beta \log\big(\varepsilon + \hat n(c)\big)

    on each query's re-ranked candidates (the others keep their ITC order below them), with
    :math:`\hat n` from :func:`caption_match_counts`. A caption true of several images is less
    likely to be the one written for a given image (the captions' own statistics), and one
    the model over-scores everywhere (a hub) is pushed down; the log-counts play the part of
    the normaliser of an *inverted softmax* (Smith et al., ICLR 2017).

    This is **transductive**: a caption's score for one image depends on the other images of
    the evaluated pool, unlike the per-query protocol of the plain ``i2t_R@K``; report its
    figures apart (``evaluate_retrieval`` names them ``*_poolnorm``).

    Args:
        i2t: the image→text matrix of :func:`itm_rerank` / :func:`refuse_candidates`.
        counts: :math:`\hat n(c)` per caption.
        weight: :math:`\beta \ge 0` (0 returns ``i2t`` unchanged).
        smoothing: :math:`\varepsilon > 0`.

    Shapes:
        ``I×C``, ``C`` → ``I×C``.
    """
    if weight < 0 or smoothing <= 0:
        raise ValueError(f"need weight >= 0 and smoothing > 0, got {weight}, {smoothing}")
    out = i2t.float().cpu().clone()
    if out.shape[1] != counts.shape[0]:
        raise ValueError(f"{out.shape[1]} captions in i2t but {counts.shape[0]} counts")
    candidate = out > _CANDIDATE_OFFSET / 2
    penalty = (weight * torch.log(smoothing + counts.float().cpu())).expand_as(out)
    out[candidate] -= penalty[candidate]
    return out


def itc_logit_scale(model: nn.Module) -> float:
    """The model's ITC logit scale τ⁻¹ (1 when it has no ITC head)."""
    scale = getattr(model, "itc_scale", None)
    if scale is None:
        return 1.0
    with torch.no_grad():
        return float(scale())
