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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.data.tasks import item_negatives
from neurogshn.errors import DataError
from neurogshn.tasks.metrics import (
    hard_negative_kinds,
    hard_negative_metrics,
    recall_given_truth,
    retrieval_metrics,
    retrieval_oracle,
    top1_truth,
)
from neurogshn.utils.runtime import resolve_device


@dataclass(frozen=True)
class HardNegativeTriple:
    """One diagnostic triple: an image, its true caption and one negative twin.

    Args:
        image_id: the image.
        caption: the true caption.
        negative: the altered caption.
        kind: the kind of negative, as the hard-negatives file names it (``relation_swap`` …).
    """

    image_id: int
    caption: str
    negative: str
    kind: str


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-less module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _collate(graphs: Sequence[Any]) -> Any:
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(graphs))


@torch.no_grad()
def encode_graphs(
    model: nn.Module,
    graphs: Sequence[Any],
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Image embeddings of a sequence of PyG graphs, in order.

    Args:
        model: a GSHN (anything with ``encode_image(batch).image_embeds``).
        graphs: PyG ``Data`` objects (a list, or a dataset indexed ``0..len-1``).
        batch_size: graphs per forward pass.
        device: where to run; default the model's device.

    Shapes:
        returns ``len(graphs)×D`` (float32, on the CPU).
    """
    dev = model_device(model) if device is None else resolve_device(device)
    out = []
    for start in range(0, len(graphs), batch_size):
        chunk = [graphs[i] for i in range(start, min(start + batch_size, len(graphs)))]
        batch = _collate(chunk).to(dev)
        out.append(model.encode_image(batch).image_embeds.float().cpu())
    if not out:
        raise ValueError("no graphs to encode")
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model: nn.Module, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Sentence embeddings of ``texts`` in order (``len(texts)×D`` float32 on the CPU)."""
    out = []
    for start in range(0, len(texts), batch_size):
        out.append(model.encode_text(list(texts[start : start + batch_size])).text_embeds)
    if not out:
        raise ValueError("no texts to encode")
    return torch.cat([o.float().cpu() for o in out])


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def load_hard_negative_items(path: str | Path) -> list[Any]:
    """Items of a ``hard_negatives_{split}.json`` file.

    Parsed by :func:`neurogshn.data.tasks.load_hard_negatives`.
    """
    from neurogshn.data.tasks import load_hard_negatives

    return list(load_hard_negatives(path).items)


def hard_negative_triples(
    items: Iterable[Any], image_ids: Iterable[int] | None = None
) -> list[HardNegativeTriple]:
    """Expand hard-negative items into triples, one per non-null negative.

    Args:
        items: :class:`~neurogshn.data.tasks.HardNegativeItem` objects, or dicts with
            ``image_id``, ``caption`` and one field per kind of negative (text or ``None``;
            see :func:`~neurogshn.data.tasks.item_negatives`).
        image_ids: keep only these images (the ones being evaluated); ``None`` keeps all.
    """
    keep = None if image_ids is None else set(int(i) for i in image_ids)
    triples = []
    for item in items:
        image_id = int(_field(item, "image_id"))
        if keep is not None and image_id not in keep:
            continue
        caption = _field(item, "caption")
        for kind, negative in item_negatives(item).items():
            triples.append(HardNegativeTriple(image_id, str(caption), negative, kind))
    return triples


#: weight w of the ITC logit in the fused match score ``ITM + w · τ⁻¹ · cos`` (re-ranking and
#: the ``fused`` hard-negative scorer); chosen on the validation split (docs/results.md)
FUSED_ITC_WEIGHT = 0.5


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
            head (match logit minus no-match logit, plus the relation term of
            :meth:`GSHN.itm_scores`); ``"fused"`` the ITM score plus
            :data:`FUSED_ITC_WEIGHT` × the ITC logit, the score re-ranking uses;
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
            evaluated images its ITM score matches (:func:`pool_normalize_i2t`). This is
            transductive (a score depends on the other images of the pool), so its figures
            get their own keys, ``i2t_R@1_poolnorm`` … (and ``i2t_true@1_poolnorm`` with
            ``diagnostics``), and ``pool_norm``; the plain keys keep the per-query protocol.
        itc_weight: ``w`` of the fused score ``ITM + w · τ⁻¹ · cos`` that re-ranking, the
            pool count and the ``fused`` hard-negative scorer use (default
            :data:`FUSED_ITC_WEIGHT`); reported as ``itc_weight`` when re-ranking.

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
            if getattr(model, "itm_head", None) is None:
                raise ValueError("rerank needs a model with an ITM head (itm_weight > 0)")
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
            i2t = retrieval_metrics(i2t_sim, owner_t)
            t2i = retrieval_metrics(t2i_sim, owner_t)
            itc = {f"{k}_itc": v for k, v in out.items() if k.startswith(("i2t_", "t2i_", "rsum"))}
            out.update({k: v for k, v in i2t.items() if k.startswith("i2t_")})
            out.update({k: v for k, v in t2i.items() if k.startswith("t2i_")})
            out["rsum"] = 100.0 * sum(
                v for k, v in out.items() if k.startswith(("i2t_R@", "t2i_R@"))
            )
            out.update(itc)
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
            truth = torch.from_numpy(diagnostics.truth_matrix(texts, ids).T).bool()  # I×C
            out.update(retrieval_oracle(truth, owner_t))
            for direction, ranking in (("i2t", i2t_sim), ("t2i", t2i_sim)):
                out.update(recall_given_truth(ranking, truth, owner_t, direction))
                out.update(top1_truth(ranking, truth, direction))
                out.update(top1_false_reasons(ranking, truth, texts, ids, direction, diagnostics))
            if rerank > 0:
                out.update({f"{k}_itc": v for k, v in top1_truth(sim, truth).items()})
            if pooled is not None:
                out["i2t_true@1_poolnorm"] = top1_truth(pooled, truth, "i2t")["i2t_true@1"]
        out["images_without_captions"] = float(
            len(graph_ids) - len([i for i in graph_ids if captions.get(i)])
        )
        if hard_negatives is not None:
            items = (
                load_hard_negative_items(hard_negatives)
                if isinstance(hard_negatives, (str, Path))
                else hard_negatives
            )
            triples = hard_negative_triples(items, ids)
            if triples:
                row_of = {image_id: row for row, image_id in enumerate(ids)}
                rows = torch.tensor([row_of[t.image_id] for t in triples])
                kinds = [t.kind for t in triples]
                pos_t = encode_texts(model, [t.caption for t in triples], 4 * batch_size)
                neg_t = encode_texts(model, [t.negative for t in triples], 4 * batch_size)
                img = image_embeds[rows]
                itc = hard_negative_metrics((img * pos_t).sum(-1), (img * neg_t).sum(-1), kinds)
                out.update({f"{k}_itc": v for k, v in itc.items() if k.endswith("_acc")})
                chosen = itc
                # Blind control: every triple scored against another image (the next row).
                blind_rows = (rows + 1) % len(ids)
                blind_img = image_embeds[blind_rows]
                blind = hard_negative_metrics(
                    (blind_img * pos_t).sum(-1), (blind_img * neg_t).sum(-1), kinds
                )
                if _use_itm(model, hard_negative_scorer):
                    pos_s, neg_s = itm_pair_scores(model, graphs, triples, rows, batch_size)
                    pos_b, neg_b = itm_pair_scores(model, graphs, triples, blind_rows, batch_size)
                    if hard_negative_scorer != "itm":  # fused: ITM + w · τ⁻¹ · cos
                        w = itc_weight * itc_logit_scale(model)
                        itm = hard_negative_metrics(pos_s, neg_s, kinds)
                        out.update({f"{k}_itm": v for k, v in itm.items() if k.endswith("_acc")})
                        pos_s = pos_s + w * (img * pos_t).sum(-1)
                        neg_s = neg_s + w * (img * neg_t).sum(-1)
                        pos_b = pos_b + w * (blind_img * pos_t).sum(-1)
                        neg_b = neg_b + w * (blind_img * neg_t).sum(-1)
                    chosen = hard_negative_metrics(pos_s, neg_s, kinds)
                    suffix = "itm" if hard_negative_scorer == "itm" else "fused"
                    out.update(
                        {f"{k}_{suffix}": v for k, v in chosen.items() if k.endswith("_acc")}
                    )
                    blind = hard_negative_metrics(pos_b, neg_b, kinds)
                # plain (chosen scorer) figures first, then the blind control, then per scorer
                per_scorer = {
                    k: out.pop(k) for k in list(out) if k.endswith(("_itc", "_itm", "_fused"))
                }
                out.update(chosen)
                if len(ids) > 1:
                    out.update({f"{k}_blind": v for k, v in blind.items() if k.endswith("_acc")})
                out.update(per_scorer)
            out["num_hard_negative_triples"] = float(len(triples))
    finally:
        model.train(was_training)
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
        enc = model.encode_image(_collate([graphs[i] for i in range(start, stop)]).to(dev))
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


def _use_itm(model: nn.Module, scorer: str) -> bool:
    if scorer not in ("auto", "itc", "itm", "fused"):
        raise ValueError(f"hard_negative_scorer must be auto, itc, itm or fused, got {scorer!r}")
    if scorer == "fused" and getattr(model, "itm_head", None) is None:
        raise ValueError("hard_negative_scorer='fused' but the model has no ITM head")
    has = getattr(model, "itm_head", None) is not None
    if scorer == "itm" and not has:
        raise ValueError("hard_negative_scorer='itm' but the model has no ITM head")
    return has and scorer != "itc"


@torch.no_grad()
def itm_pair_scores(
    model: nn.Module,
    graphs: Sequence[Any],
    triples: Sequence[HardNegativeTriple],
    rows: Tensor,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """ITM scores (match minus no-match logit) of each triple's true and negative caption.

    Every image is encoded once (``batch_size`` images at a time) and its encoding reused for
    all its triples (:meth:`~neurogshn.model.gshn.ImageEncoding.select`); the pairs are
    scored ``4 × batch_size`` at a time.

    Args:
        model: a GSHN with ``itm_head`` (or any model with ``itm_head(tokens, token_mask,
            nodes, node_mask)`` and node embeddings in its image encoding).
        graphs: the evaluated graphs by row; ``rows[k]`` is triple ``k``'s image row.

    Shapes:
        returns two tensors of ``len(triples)`` (CPU float32).
    """
    from torch_geometric.utils import to_dense_batch

    rows = torch.as_tensor(rows).long().cpu()
    pos_out, neg_out = torch.empty(len(triples)), torch.empty(len(triples))
    dev = model_device(model)
    images = torch.unique(rows)  # sorted
    for start in range(0, len(images), batch_size):
        here_images = images[start : start + batch_size]
        enc = model.encode_image(_collate([graphs[int(r)] for r in here_images]).to(dev))
        dense = None
        if not hasattr(model, "itm_scores"):
            dense = to_dense_batch(enc.node_embeds, enc.node_batch, batch_size=len(here_images))
        here = torch.nonzero(torch.isin(rows, here_images)).squeeze(1)
        for chunk in here.split(4 * batch_size):
            local = torch.searchsorted(here_images, rows[chunk]).to(dev)
            chosen = [triples[int(k)] for k in chunk]
            for texts, out in (
                ([t.caption for t in chosen], pos_out),
                ([t.negative for t in chosen], neg_out),
            ):
                text = model.encode_text(texts)
                if dense is None:  # GSHN: the head with whatever inputs it needs
                    score = model.itm_scores(enc.select(local), text, list(texts))
                else:
                    nodes, node_mask = dense[0][local], dense[1][local]
                    logits = model.itm_head(
                        text.token_embeds, text.attention_mask.bool(), nodes, node_mask
                    )
                    score = logits[:, 1] - logits[:, 0]
                out[chunk] = score.float().cpu()
    return pos_out, neg_out


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
