r"""Image-text retrieval evaluation (zero-shot or fine-tuned) on any COCO-format data set.

:func:`evaluate_retrieval` embeds every image graph and every caption with a GSHN (eval mode,
no gradients, in batches), scores all image-caption pairs by the cosine of their embeddings
(:math:`s(i, c) = \hat v_i^\top \hat t_c`, both L2-normalised by the model) and computes the
metrics of :mod:`neurogshn.tasks.metrics`: recall@K both ways in the several-captions-per-image
protocol, ``rsum``, median ranks, and, when a hard-negatives file is given, one accuracy per
kind of negative the file has (``<kind>_acc``: true caption vs its altered twin, same image).
Figures that need a truth oracle (what the captions allow, why a first candidate is false)
come from a data set's declared diagnostics object
(:func:`neurogshn.data.diagnostics.diagnostics_for`), never from knowledge of a benchmark.

Nothing here depends on how the model was trained: calling it straight after pretraining is
the zero-shot retrieval path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.errors import DataError
from neurogshn.tasks.encode import encode_graphs, encode_texts
from neurogshn.tasks.hard_negatives import hard_negative_diagnostics, load_hard_negative_items
from neurogshn.tasks.metrics import (
    hard_negative_kinds,
    recall_given_truth,
    retrieval_metrics,
    retrieval_oracle,
    top1_truth,
)
from neurogshn.tasks.rerank import (
    FUSED_ITC_WEIGHT,
    caption_match_counts,
    itc_logit_scale,
    itm_rerank,
    pool_normalize_i2t,
)
from neurogshn.utils.runtime import resolve_device


def evaluate_retrieval(
    model: nn.Module,
    graph_dataset: Any,
    coco_dataset: Any,
    hard_negatives: Iterable[Any] | str | Path | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    hard_negative_scorer: str = "auto",
    rerank: int = 0,
    diagnostics: Any = None,
    pool_norm: float = 0.0,
    itc_weight: float = FUSED_ITC_WEIGHT,
    rerank_word_evidence: bool = False,
) -> dict[str, float]:
    """Zero-shot (or fine-tuned) image-text retrieval with the diagnostics.

    Args:
        model: a GSHN; put in eval mode for the call (its mode is restored afterwards) and
            moved to ``device`` when one is given.
        graph_dataset: the split's graphs (``.image_ids`` and ``.get_by_image_id(id)``, or a
            sequence of ``Data`` with ``image_id``).
        coco_dataset: the split's captions: anything with ``.captions: dict[int, list[str]]``
            (e.g. ``CocoPanopticDataset``).
        hard_negatives: items of a hard-negatives file, or its path; ``None`` skips the
            diagnostics (the result then has no ``<kind>_acc`` …).
        batch_size: graphs per forward pass (captions use ``4×`` this).
        device: device to run on; default the model's current device.
        max_images: evaluate only the first ``max_images`` images (in graph-dataset order).
        hard_negative_scorer: how a (image, caption) pair is scored for the diagnostics:
            ``"itc"`` the cosine of the embeddings; ``"itm"`` the model's image-text matching
            head (match logit minus no-match logit, plus the word evidence of
            :meth:`GSHN.itm_scores`); ``"fused"`` the ITM score plus
            :data:`~neurogshn.tasks.rerank.FUSED_ITC_WEIGHT` × the ITC logit, the score
            re-ranking uses;
            ``"auto"`` fused when the model has an ITM head, else ITC. The ITC figures are
            always reported as ``*_acc_itc``, and with an ITM head the ITM ones as
            ``*_acc_itm`` and the fused ones as ``*_acc_fused``; the plain
            ``<kind>_acc`` (``relation_swap_acc`` …) are those of the chosen scorer.

        rerank: ``K > 0``: re-rank each query's ``K`` best candidates by ITC with the ITM
            head (the ALBEF / BLIP protocol; the ITM score plus, with a masked-token head,
            the word-PMI term of :meth:`~neurogshn.model.gshn.GSHN.itm_scores`): the
            ``i2t_R@…`` / ``t2i_R@…`` / ``rsum`` / ``*_MedR`` keys are then the re-ranked
            figures and the ITC-only ones are reported with an ``_itc`` suffix
            (``i2t_R@1_itc`` …), with ``rerank_k``. A recall at a cut-off above ``K`` is
            unchanged by re-ranking. Needs an ITM head.
        rerank_word_evidence: re-rank with the full ITM score, the masked-LM word evidence
            included (:meth:`~neurogshn.model.gshn.GSHN.itm_scores`; one cross-encoder pass
            per scored word of each of the ``≈ 6 K`` pairs per image: hours for 1,000 images
            on a CPU); off: the ITM logits (the hard-negative diagnostics always use the full
            score).
        diagnostics: the data set's diagnostics object
            (:class:`~neurogshn.data.diagnostics.DatasetDiagnostics`, from
            :func:`~neurogshn.data.diagnostics.diagnostics_for`; duck-typed: its
            ``truth_matrix(texts, image_ids)``, ``why_false(text, image_id)`` and ``reasons``
            are used), for a data set with a truth oracle: adds what the captions allow, the
            keys of
            :func:`~neurogshn.tasks.metrics.retrieval_oracle` (``i2t_R@1_oracle`` …,
            ``ambiguous_caption_frac``), and how often the first candidate is true of the
            query whoever owns it, ``i2t_true@1`` / ``t2i_true@1``
            (:func:`~neurogshn.tasks.metrics.top1_truth`; ``*_true@1_itc`` for the cosine
            ranking when re-ranking), why the first candidate is false when it is,
            ``i2t_false@1_<reason>`` … (:func:`top1_false_reasons`), and the R@1 the ranking
            would get without its false pairs, ``i2t_R@1_given_truth`` /
            ``t2i_R@1_given_truth`` (:func:`~neurogshn.tasks.metrics.recall_given_truth`).
        pool_norm: ``β > 0`` (needs ``rerank``): also report image→text figures with each
            caption's score lowered by ``β · log(ε + n̂(c))``, ``n̂(c)`` the number of
            evaluated images its ITM score matches
            (:func:`~neurogshn.tasks.rerank.pool_normalize_i2t`). This is
            transductive (a score depends on the other images of the pool), so its figures
            get their own keys, ``i2t_R@1_poolnorm`` … (and ``i2t_true@1_poolnorm`` with
            ``diagnostics``), and ``pool_norm``; the plain keys keep the per-query protocol.
        itc_weight: ``w`` of the fused score ``ITM + w · τ⁻¹ · cos`` that re-ranking, the
            pool count and the ``fused`` hard-negative scorer use (default
            :data:`~neurogshn.tasks.rerank.FUSED_ITC_WEIGHT`); reported as ``itc_weight`` when
            re-ranking.

    The *blind control* ``<kind>_acc_blind`` … scores every triple with the chosen scorer
    against another image (the next one in order): a model that reads the image falls to
    about chance there, one that wins on text priors alone (e.g. a preferred word order) keeps
    its accuracy. Compare the two before trusting a high diagnostic.

    Returns:
        The keys of :func:`~neurogshn.tasks.metrics.retrieval_metrics` (``i2t_R@1`` …
        ``rsum``, ``i2t_MedR``, ``num_images``, ``num_captions``), ``images_without_captions``
        (graphs left out for lack of captions) and, with hard negatives, those of
        :func:`~neurogshn.tasks.metrics.hard_negative_metrics` (``<kind>_acc`` and
        ``<kind>_n`` per kind of the file, ``hard_negative_acc``).

    Raises:
        DataError: when no image has both a graph and at least one caption.
        Exception: whatever ``diagnostics`` raises for captions or images it cannot judge
            (check them first with its ``problem(texts, image_ids)``).
    """
    if pool_norm < 0 or (pool_norm > 0 and rerank <= 0):
        raise ValueError(f"pool_norm must be >= 0 and needs rerank > 0, got {pool_norm}, {rerank}")
    if not itc_weight >= 0:
        raise ValueError(f"itc_weight must be >= 0, got {itc_weight}")
    if rerank > 0 and getattr(model, "itm_head", None) is None:
        raise ValueError("rerank needs a model with an ITM head (itm_weight > 0)")
    if device is not None:
        model = model.to(resolve_device(device))
    captions: Mapping[int, Sequence[str]] = coco_dataset.captions
    graph_ids = [int(i) for i in _image_ids(graph_dataset)]
    ids, graphs, texts, owner = retrieval_pool(graph_dataset, captions, max_images)
    root = getattr(coco_dataset, "root", "<captions>")
    if not ids:
        raise DataError(root, "no image of the split has both a graph and a caption")

    was_training = model.training
    model.eval()
    try:
        image_embeds = encode_graphs(model, graphs, batch_size=batch_size)
        text_embeds = encode_texts(model, texts, batch_size=4 * batch_size)
        owner_t = torch.tensor(owner)
        sim = image_embeds @ text_embeds.T
        out = retrieval_metrics(sim, owner_t)
        i2t_sim = t2i_sim = sim
        if rerank > 0:
            i2t_sim, t2i_sim = itm_rerank(
                model,
                graphs,
                texts,
                sim,
                rerank,
                batch_size,
                itc_weight=itc_weight,
                word_evidence=rerank_word_evidence,
            )
            out.update(reranked_metrics(out, i2t_sim, t2i_sim, owner_t))
            out["rerank_k"] = float(rerank)
            out["itc_weight"] = float(itc_weight)
        pooled = None
        if pool_norm > 0:
            counts = caption_match_counts(t2i_sim, sim, itc_weight, itc_logit_scale(model))
            pooled = pool_normalize_i2t(i2t_sim, counts, pool_norm)
            out.update(
                {
                    f"{k}_poolnorm": v
                    for k, v in retrieval_metrics(pooled, owner_t).items()
                    if k.startswith("i2t_")
                }
            )
            out["pool_norm"] = float(pool_norm)
        if diagnostics is not None:
            rankings = {"i2t": i2t_sim, "t2i": t2i_sim}
            cosine = sim if rerank > 0 else None
            out.update(oracle_metrics(diagnostics, texts, ids, owner_t, rankings, cosine, pooled))
        out["images_without_captions"] = float(
            len(graph_ids) - len([i for i in graph_ids if captions.get(i)])
        )
        if hard_negatives is not None:
            items = (
                load_hard_negative_items(hard_negatives)
                if isinstance(hard_negatives, (str, Path))
                else hard_negatives
            )
            out.update(
                hard_negative_diagnostics(
                    model,
                    graphs,
                    ids,
                    image_embeds,
                    items,
                    batch_size,
                    hard_negative_scorer,
                    itc_weight,
                )
            )
    finally:
        model.train(was_training)
    return out


def reranked_metrics(
    cosine: Mapping[str, float], i2t_sim: Tensor, t2i_sim: Tensor, owner: Tensor
) -> dict[str, float]:
    """The re-ranked figures under the plain keys (``i2t_R@1`` …, ``rsum``) and the cosine
    ones (``cosine``, from :func:`~neurogshn.tasks.metrics.retrieval_metrics`) under
    ``<key>_itc``.

    Shapes:
        i2t_sim, t2i_sim ``I×C``, owner ``C``
    """
    out = {k: v for k, v in retrieval_metrics(i2t_sim, owner).items() if k.startswith("i2t_")}
    out.update({k: v for k, v in retrieval_metrics(t2i_sim, owner).items() if k.startswith("t2i_")})
    out["rsum"] = 100.0 * sum(v for k, v in out.items() if k.startswith(("i2t_R@", "t2i_R@")))
    out.update({f"{k}_itc": v for k, v in cosine.items() if k.startswith(("i2t_", "t2i_", "rsum"))})
    return out


def oracle_metrics(
    diagnostics: Any,
    texts: Sequence[str],
    ids: Sequence[int],
    owner: Tensor,
    rankings: Mapping[str, Tensor],
    cosine: Tensor | None = None,
    pooled: Tensor | None = None,
) -> dict[str, float]:
    """What the captions allow and how the rankings fare against the truth oracle of a data
    set that has one (see ``diagnostics`` in :func:`evaluate_retrieval`): the oracle's
    recalls, per direction the recall given the truth, the truth of the first candidate and
    why it is false; ``*_true@1_itc`` for the ``cosine`` ranking when the rankings are
    re-ranked, ``i2t_true@1_poolnorm`` for a ``pooled`` one.

    Shapes:
        owner ``C``, rankings ``{"i2t": I×C, "t2i": I×C}``, cosine and pooled ``I×C``
    """
    truth = torch.from_numpy(diagnostics.truth_matrix(texts, ids).T).bool()  # I×C
    out = retrieval_oracle(truth, owner)
    for direction, ranking in rankings.items():
        out.update(recall_given_truth(ranking, truth, owner, direction))
        out.update(top1_truth(ranking, truth, direction))
        out.update(top1_false_reasons(ranking, truth, texts, ids, direction, diagnostics))
    if cosine is not None:
        out.update({f"{k}_itc": v for k, v in top1_truth(cosine, truth).items()})
    if pooled is not None:
        out["i2t_true@1_poolnorm"] = top1_truth(pooled, truth, "i2t")["i2t_true@1"]
    return out


def top1_false_reasons(
    similarity: Tensor,
    truth: Tensor,
    texts: Sequence[str],
    image_ids: Sequence[int],
    direction: str,
    diagnostics: Any,
) -> dict[str, float]:
    """Why a ranking's first candidate is false, as fractions of all queries.

    For each query whose top-scored candidates include a false pair (the misses of
    :func:`~neurogshn.tasks.metrics.top1_truth`), the first such candidate's reason
    (``diagnostics.why_false(text, image_id)``, one of ``diagnostics.reasons``) is counted;
    ``{direction}_true@1`` plus these fractions is 1.

    Args:
        similarity: image-by-caption scores (``I×C``).
        truth: ``truth[i, c]``: caption ``c`` is true of image ``i`` (``I×C``).
        texts: the ``C`` captions; image_ids: the ``I`` images.
        direction: ``"i2t"`` (a query is an image) or ``"t2i"`` (a caption).
        diagnostics: the data set's diagnostics object
            (:class:`~neurogshn.data.diagnostics.DatasetDiagnostics`).

    Returns:
        ``{direction}_false@1_{reason}`` for every reason of ``diagnostics.reasons``.
    """
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', got {direction!r}")
    sim = similarity.float().cpu()
    t = truth.bool().cpu()
    if direction == "t2i":
        sim, t = sim.T, t.T  # rows are the queries
    top = sim == sim.max(dim=1, keepdim=True).values
    counts = dict.fromkeys(diagnostics.reasons, 0)
    for query in torch.nonzero((top & ~t).any(dim=1)).flatten().tolist():
        candidate = int(torch.nonzero(top[query] & ~t[query])[0])
        image, caption = (query, candidate) if direction == "i2t" else (candidate, query)
        reason = diagnostics.why_false(texts[caption], int(image_ids[image]))
        if reason is None:
            raise ValueError(f"truth says false but the oracle finds {texts[caption]!r} true")
        if reason not in counts:
            raise ValueError(f"the oracle gave {reason!r}, not one of {diagnostics.reasons}")
        counts[reason] += 1
    return {f"{direction}_false@1_{r}": n / sim.shape[0] for r, n in counts.items()}


def retrieval_pool(
    graph_dataset: Any,
    captions: Mapping[int, Sequence[str]],
    max_images: int | None = None,
) -> tuple[list[int], Sequence[Any], list[str], list[int]]:
    """The retrieval pool: images that have a graph and a caption, and their captions.

    Returns ``(ids, graphs, texts, owner)``: the image ids (graph-dataset order, the first
    ``max_images``), their graphs in that order, every caption of those images, and the row of
    ``ids`` each caption belongs to.
    """
    ids = [int(i) for i in _image_ids(graph_dataset) if captions.get(int(i))]
    if max_images is not None:
        ids = ids[:max_images]
    texts = [str(c) for image_id in ids for c in captions[image_id]]
    owner = [row for row, image_id in enumerate(ids) for _ in captions[image_id]]
    return ids, _GraphsById(graph_dataset, ids), texts, owner


def _image_ids(graph_dataset: Any) -> list[int]:
    ids = getattr(graph_dataset, "image_ids", None)
    if ids is not None:
        return list(ids)
    return [int(graph_dataset[i].image_id) for i in range(len(graph_dataset))]


class _GraphsById:
    """The graphs of ``ids`` in that order, from a graph dataset (indexable 0..len-1)."""

    def __init__(self, graph_dataset: Any, ids: Sequence[int]) -> None:
        self.dataset = graph_dataset
        self.ids = list(ids)
        if hasattr(graph_dataset, "get_by_image_id"):
            self._get = graph_dataset.get_by_image_id
        else:
            index = {int(graph_dataset[i].image_id): i for i in range(len(graph_dataset))}
            self._get = lambda image_id: graph_dataset[index[image_id]]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Any:
        return self._get(self.ids[i])


def summarize_retrieval(metrics: Mapping[str, float]) -> str:
    """One line: R@1/5/10 both ways, rsum and the hard-negative accuracy of every kind the
    metrics have (:func:`~neurogshn.tasks.metrics.hard_negative_kinds`)."""
    parts = [
        f"i2t R@1/5/10 {100 * metrics['i2t_R@1']:.1f}/{100 * metrics['i2t_R@5']:.1f}/"
        f"{100 * metrics['i2t_R@10']:.1f}",
        f"t2i R@1/5/10 {100 * metrics['t2i_R@1']:.1f}/{100 * metrics['t2i_R@5']:.1f}/"
        f"{100 * metrics['t2i_R@10']:.1f}",
        f"rsum {metrics['rsum']:.1f}",
    ]
    for kind in hard_negative_kinds(metrics):
        value = metrics[f"{kind}_acc"]
        if not math.isnan(value):
            parts.append(f"{kind} {100 * value:.1f}%")
    return " | ".join(parts)
