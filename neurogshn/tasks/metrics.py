r"""Evaluation metrics for the downstream tasks: pure functions on tensors / arrays.

Every function returns a ``dict[str, float]`` whose keys name the direction, the cut-off and
the task, so that tables and JSON files are self-describing (``i2t_R@1``, ``t2i_R@5``,
``rsum``, ``relation_swap_acc``, ``vqa_acc``, ``vqa_acc_color``, ``ve_acc_entailment`` …).
Accuracies and recalls are fractions in ``[0, 1]`` (tables print them as percentages).

Retrieval protocol (the standard one of COCO/Flickr30k image-text retrieval, several captions
per image). Given a similarity matrix :math:`S \in \mathbb{R}^{I \times C}` between ``I``
images and ``C`` captions, and the image :math:`g(c)` each caption belongs to:

* **image → text** (``i2t``): the rank of image :math:`i` is the rank of its *best-scored* own
  caption among all captions, i.e. the number of *other* images' captions :math:`c'` with
  :math:`S_{i c'} \ge \max_{c: g(c) = i} S_{i c}`. The image is a hit at ``K`` when that rank
  is below ``K`` (any one of its captions in the top ``K``).
* **text → image** (``t2i``): the rank of caption :math:`c` is the number of other images
  :math:`i' \ne g(c)` with :math:`S_{i' c} \ge S_{g(c) c}`; a hit at ``K`` when it is below ``K``.
* ``R@K`` is the fraction of hits (images for ``i2t``, captions for ``t2i``); ``rsum`` is the
  sum of the six recalls in percent (maximum 600), as in the literature.

**Ties** are resolved pessimistically and deterministically: a wrong candidate whose score
*equals* the true one's is ranked *ahead* of it. A model that scores everything the same
therefore gets a rank of ``(#candidates - #true)`` and not a lucky ``R@1 = 1`` from an
index-ordered sort. The hard-negative diagnostics follow the same rule: a tie between the
true caption and its negative counts as wrong (chance is 50%).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

RECALL_KS: tuple[int, ...] = (1, 5, 10)


def _as_tensor(x: Any, dtype: torch.dtype | None = None) -> Tensor:
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, Tensor):
        return x.detach().cpu().tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return list(x)


def retrieval_ranks(
    similarity: Tensor | np.ndarray,
    caption_to_image: Tensor | np.ndarray | Sequence[int],
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Ranks (0 = first) of the true items in both retrieval directions.

    Args:
        similarity: image-by-caption scores (higher = more similar). Must be finite.
        caption_to_image: for every caption (column) the row index of its image.
        chunk_size: rows / columns processed at once (bounds memory on large test sets).

    Returns:
        ``(i2t_ranks, t2i_ranks)``: ``i2t_ranks[i]`` is the rank of image ``i``'s best own
        caption among all captions; ``t2i_ranks[c]`` the rank of caption ``c``'s image among
        all images. Ties count against the true item (see the module docstring).

    Shapes:
        similarity: ``I×C``; caption_to_image: ``C``; outputs ``I`` and ``C`` (int64).

    Raises:
        ValueError: on shape mismatches, non-finite scores, out-of-range image indices or an
            image without any caption.
    """
    sim = _as_tensor(similarity)
    if sim.dtype != torch.float64:
        sim = sim.to(torch.float32)  # no copy for float32 input (5k×25k COCO: 0.5 GB)
    owner = _as_tensor(caption_to_image).to(torch.long).reshape(-1)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be images×captions (2-D), got shape {tuple(sim.shape)}")
    n_img, n_cap = sim.shape
    if owner.numel() != n_cap:
        raise ValueError(
            f"caption_to_image has {owner.numel()} entries but similarity has {n_cap} captions"
        )
    if n_img == 0 or n_cap == 0:
        raise ValueError("retrieval needs at least one image and one caption")
    if not torch.isfinite(sim).all():
        raise ValueError("similarity contains NaN or infinite scores")
    if owner.min() < 0 or owner.max() >= n_img:
        raise ValueError(f"caption_to_image values must lie in [0, {n_img}), got {owner.tolist()}")
    counts = torch.bincount(owner, minlength=n_img)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"images without any caption (rows {missing[:10]}); drop them first")

    # i2t: best own-caption score per image, then count other captions scoring >= it.
    i2t = torch.empty(n_img, dtype=torch.long)
    own_mask_full = owner.unsqueeze(0)  # 1×C
    for start in range(0, n_img, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n_img))
        block = sim[rows]  # R×C
        own = own_mask_full == rows.unsqueeze(1)  # R×C
        best = block.masked_fill(~own, float("-inf")).max(dim=1).values  # R
        i2t[rows] = ((block >= best.unsqueeze(1)) & ~own).sum(dim=1)

    # t2i: score of the true image per caption, then count other images scoring >= it.
    t2i = torch.empty(n_cap, dtype=torch.long)
    for start in range(0, n_cap, chunk_size):
        cols = torch.arange(start, min(start + chunk_size, n_cap))
        block = sim[:, cols]  # I×R
        true_rows = owner[cols]
        true_score = block[true_rows, torch.arange(len(cols))]  # R
        wrong = torch.ones_like(block, dtype=torch.bool)
        wrong[true_rows, torch.arange(len(cols))] = False
        t2i[cols] = ((block >= true_score.unsqueeze(0)) & wrong).sum(dim=0)
    return i2t, t2i


def retrieval_metrics(
    similarity: Tensor | np.ndarray,
    caption_to_image: Tensor | np.ndarray | Sequence[int],
    ks: Iterable[int] = RECALL_KS,
) -> dict[str, float]:
    r"""Recall@K both ways, ``rsum`` and median ranks.

    Args:
        similarity: image-by-caption scores (``I×C``).
        caption_to_image: image row of each caption (``C``).
        ks: the cut-offs ``K``.

    Returns:
        ``{"i2t_R@K": ..., "t2i_R@K": ..., "rsum": ..., "i2t_MedR": ..., "t2i_MedR": ...,
        "num_images": I, "num_captions": C}``. Recalls are fractions in [0, 1];
        ``rsum = 100·Σ_K (i2t_R@K + t2i_R@K)``; median ranks are 1-based (1 = perfect).
    """
    i2t, t2i = retrieval_ranks(similarity, caption_to_image)
    out: dict[str, float] = {}
    ks = tuple(ks)
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{direction}_R@{k}"] = float((ranks < k).double().mean())
    out["rsum"] = 100.0 * sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in ks)
    out["i2t_MedR"] = float(torch.quantile(i2t.double() + 1, 0.5, interpolation="lower"))
    out["t2i_MedR"] = float(torch.quantile(t2i.double() + 1, 0.5, interpolation="lower"))
    out["num_images"] = float(i2t.numel())
    out["num_captions"] = float(t2i.numel())
    return out


def _expected_hit(groups: Sequence[tuple[int, int]], k: int) -> float:
    """P(an own item is in the top ``k``) when items come in ``groups`` of ``(size, own)``,
    ranked group after group and in random order within a group."""
    seen = 0
    for size, own in groups:
        if seen + size <= k:
            if own:
                return 1.0
            seen += size
            continue
        r = k - seen
        return 1.0 - math.comb(size - own, r) / math.comb(size, r)
    return 0.0


def retrieval_oracle(
    truth: Tensor | np.ndarray,
    caption_to_image: Tensor | np.ndarray | Sequence[int],
    ks: Iterable[int] = RECALL_KS,
) -> dict[str, float]:
    r"""Recall@K of a perfect reader of the captions: what their ambiguity allows.

    The oracle ranks every candidate that makes a true (image, caption) pair above every
    false one and orders the true ones at random. A caption true of several images cannot
    single out its own: with :math:`k_c` the images caption :math:`c` is true of, and
    :math:`t_i` the captions true of image :math:`i` of which :math:`o_i` are its own,

    .. math::

        \text{t2i R@K} = \operatorname{mean}_c \min(1, K / k_c), \qquad
        \text{i2t R@K} = \operatorname{mean}_i \Bigl(1 - \binom{t_i - o_i}{K} \Big/
        \binom{t_i}{K}\Bigr) \; (K < t_i).

    This is not a bound on every model: a scorer may also prefer, among true captions, those
    that are specific (true of few images), which the ``*_oracle_specific`` figure does (true
    captions ranked by :math:`k_c`, ascending, random within ties; image→text only — for
    text→image all true images share :math:`k_c`), and a model of how the captions were
    *written* can break ties further (``benchmarks/caption_ceiling.py``).

    A caption is always counted true of its own image (a caption the logic finds false of its
    own image is a labelling error; ``own_false`` counts them).

    Args:
        truth: ``truth[i, c]``: caption ``c`` is true of image ``i``.
        caption_to_image: image row of each caption.
        ks: the cut-offs ``K``.

    Returns:
        ``i2t_R@K_oracle``, ``t2i_R@K_oracle``, ``rsum_oracle``, ``i2t_R@K_oracle_specific``,
        ``ambiguous_caption_frac`` (captions true of more than one image),
        ``images_per_caption`` (mean :math:`k_c`), ``own_false``.

    Shapes:
        truth: ``I×C``; caption_to_image: ``C``.
    """
    owner = _as_tensor(caption_to_image).to(torch.long).reshape(-1)
    t = _as_tensor(truth).to(torch.bool).clone()
    if t.ndim != 2 or t.shape[1] != owner.numel():
        raise ValueError(
            f"truth must be images×captions with {owner.numel()} captions, got {tuple(t.shape)}"
        )
    n_img = t.shape[0]
    if owner.numel() == 0 or n_img == 0:
        raise ValueError("retrieval needs at least one image and one caption")
    if owner.min() < 0 or owner.max() >= n_img:
        raise ValueError(f"caption_to_image values must lie in [0, {n_img})")
    cols = torch.arange(owner.numel())
    own_false = int((~t[owner, cols]).sum())
    t[owner, cols] = True
    k_c = t.sum(dim=0)  # images each caption is true of
    one_group: list[list[tuple[int, int]]] = []
    by_specificity: list[list[tuple[int, int]]] = []
    for i in range(n_img):
        true_caps = torch.nonzero(t[i]).flatten()
        is_own = owner[true_caps] == i
        one_group.append([(true_caps.numel(), int(is_own.sum()))])
        spec = k_c[true_caps]
        by_specificity.append(
            [(int((spec == v).sum()), int(is_own[spec == v].sum())) for v in spec.unique()]
        )  # unique() is sorted: fewest images first
    out: dict[str, float] = {}
    ks = tuple(ks)
    for k in ks:
        out[f"i2t_R@{k}_oracle"] = float(np.mean([_expected_hit(g, k) for g in one_group]))
    for k in ks:
        out[f"t2i_R@{k}_oracle"] = float(torch.clamp(k / k_c.double(), max=1.0).mean())
    out["rsum_oracle"] = 100.0 * sum(out[f"{d}_R@{k}_oracle"] for d in ("i2t", "t2i") for k in ks)
    for k in ks:
        out[f"i2t_R@{k}_oracle_specific"] = float(
            np.mean([_expected_hit(g, k) for g in by_specificity])
        )
    out["ambiguous_caption_frac"] = float((k_c > 1).double().mean())
    out["images_per_caption"] = float(k_c.double().mean())
    out["own_false"] = float(own_false)
    return out


def recall_given_truth(
    similarity: Tensor | np.ndarray,
    truth: Tensor | np.ndarray,
    caption_to_image: Tensor | np.ndarray | Sequence[int],
    direction: str = "both",
) -> dict[str, float]:
    """R@1 of a ranking with every false pair dropped: how well it breaks the ties that the
    captions leave, once its reading errors are taken away.

    ``R@1`` loses to two things: a first candidate that is false (a reading error, see
    :func:`top1_truth`) and one that is true but not the query's own (a caption true of
    several images). This measures the second alone; compare it with the random order of
    :func:`retrieval_oracle` (``*_R@1_oracle``) and, on the benchmark, with the Bayes decision
    under the caption generator (``benchmarks/caption_ceiling.py``).

    Args:
        similarity: image-by-caption scores (``I×C``).
        truth: ``truth[i, c]``: caption ``c`` is true of image ``i`` (``I×C``). A caption's
            own pair is kept whatever it says (as :func:`retrieval_oracle` counts it).
        caption_to_image: image row of each caption (``C``).
        direction: ``"i2t"``, ``"t2i"`` or ``"both"``.

    Returns:
        ``i2t_R@1_given_truth`` and / or ``t2i_R@1_given_truth``.
    """
    sim = _as_tensor(similarity).to(torch.float64)
    t = _as_tensor(truth).to(torch.bool)
    if sim.shape != t.shape:
        raise ValueError(f"similarity {tuple(sim.shape)} and truth {tuple(t.shape)} differ")
    if direction not in ("i2t", "t2i", "both"):
        raise ValueError(f"direction must be 'i2t', 't2i' or 'both', got {direction!r}")
    owner = _as_tensor(caption_to_image).to(torch.long).reshape(-1)
    t = t.clone()
    t[owner, torch.arange(len(owner))] = True
    floor = (sim.min() if sim.numel() else sim.new_zeros(())) - 1.0
    m = retrieval_metrics(sim.masked_fill(~t, float(floor)), owner, ks=(1,))
    names = ("i2t", "t2i") if direction == "both" else (direction,)
    return {f"{d}_R@1_given_truth": m[f"{d}_R@1"] for d in names}


def top1_truth(
    similarity: Tensor | np.ndarray,
    truth: Tensor | np.ndarray,
    direction: str = "both",
) -> dict[str, float]:
    """How often a ranking's first candidate makes a true pair, whoever owns it.

    ``R@1`` counts only the query's own image / captions; this counts any image the caption
    is true of (``t2i_true@1``) and any caption true of the image (``i2t_true@1``). The gap
    between the two is what ambiguity of the captions costs the ranking; a low value here is
    a real reading error. A tie at the top counts as a miss unless every tied candidate is
    true (as ranks count ties against the true item).

    Args:
        similarity: image-by-caption scores (``I×C``).
        truth: ``truth[i, c]``: caption ``c`` is true of image ``i`` (``I×C``).
        direction: ``"i2t"``, ``"t2i"`` or ``"both"``.

    Returns:
        ``i2t_true@1`` and / or ``t2i_true@1`` (fractions of images / captions).
    """
    sim = _as_tensor(similarity).to(torch.float32)
    t = _as_tensor(truth).to(torch.bool)
    if sim.ndim != 2 or sim.shape != t.shape:
        raise ValueError(
            f"similarity {tuple(sim.shape)} and truth {tuple(t.shape)} must both be images×captions"
        )
    if sim.numel() == 0:
        raise ValueError("top1_truth needs at least one image and one caption")
    if direction not in ("i2t", "t2i", "both"):
        raise ValueError(f"direction must be 'i2t', 't2i' or 'both', got {direction!r}")
    out: dict[str, float] = {}
    for name, dim in (("i2t", 1), ("t2i", 0)):
        if direction not in (name, "both"):
            continue
        top = sim == sim.max(dim=dim, keepdim=True).values
        hit = ~(top & ~t).any(dim=dim)
        out[f"{name}_true@1"] = float(hit.double().mean())
    return out


def pairwise_accuracy(
    positive_scores: Tensor | np.ndarray | Sequence[float],
    negative_scores: Tensor | np.ndarray | Sequence[float],
) -> float:
    """Fraction of pairs with ``positive > negative`` (ties count as wrong; chance is 0.5).

    Shapes:
        both inputs ``P``; returns a float (``nan`` when ``P == 0``).
    """
    pos = _as_tensor(positive_scores).to(torch.float64).reshape(-1)
    neg = _as_tensor(negative_scores).to(torch.float64).reshape(-1)
    if pos.shape != neg.shape:
        raise ValueError(f"{pos.numel()} positive scores but {neg.numel()} negative scores")
    if pos.numel() == 0:
        return float("nan")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise ValueError("scores contain NaN or infinite values")
    return float((pos > neg).double().mean())


def hard_negative_metrics(
    positive_scores: Tensor | np.ndarray | Sequence[float],
    negative_scores: Tensor | np.ndarray | Sequence[float],
    kinds: Sequence[str],
) -> dict[str, float]:
    """Hard-negative diagnostics per kind of negative.

    Each triple is (image, true caption, negative caption); it is correct when
    ``score(image, true) > score(image, negative)`` strictly.

    Args:
        positive_scores: score of the true caption, one per triple.
        negative_scores: score of the negative caption, one per triple.
        kinds: kind of each triple, as the hard-negatives file names it
            (``relation_swap``, ``attribute_swap`` … or any name of a user's file).

    Returns:
        ``<kind>_acc`` and its count ``<kind>_n`` for each kind present, in order of first
        appearance (``relation_swap_acc``, ``relation_swap_n`` …), and
        ``hard_negative_acc`` over all triples.
    """
    pos = _as_tensor(positive_scores).to(torch.float64).reshape(-1)
    neg = _as_tensor(negative_scores).to(torch.float64).reshape(-1)
    kinds = list(kinds)
    if not (len(kinds) == pos.numel() == neg.numel()):
        raise ValueError(
            f"{pos.numel()} positive, {neg.numel()} negative scores and {len(kinds)} kinds"
        )
    out: dict[str, float] = {}
    for kind in dict.fromkeys(kinds):
        idx = torch.tensor([i for i, k in enumerate(kinds) if k == kind], dtype=torch.long)
        out[f"{kind}_acc"] = pairwise_accuracy(pos[idx], neg[idx])
        out[f"{kind}_n"] = float(idx.numel())
    if kinds:
        out["hard_negative_acc"] = pairwise_accuracy(pos, neg)
    return out


def hard_negative_kinds(metrics: Mapping[str, float]) -> list[str]:
    """The kinds of hard negative whose accuracy ``metrics`` report, in their order.

    A kind is recognised by the pair of keys :func:`hard_negative_metrics` writes for it,
    ``<kind>_acc`` and ``<kind>_n`` (so scorer and control variants such as
    ``<kind>_acc_itm`` and the overall ``hard_negative_acc`` are not kinds).
    """
    return [
        key[: -len("_acc")]
        for key in metrics
        if key.endswith("_acc")
        and key != "hard_negative_acc"
        and f"{key[: -len('_acc')]}_n" in metrics
    ]


def grouped_accuracy(
    predictions: Sequence[Any] | Tensor | np.ndarray,
    targets: Sequence[Any] | Tensor | np.ndarray,
    groups: Sequence[Any] | None,
    prefix: str,
) -> dict[str, float]:
    """Overall accuracy ``{prefix}_acc`` and one ``{prefix}_acc_{group}`` per group.

    Predictions and targets may be labels of any hashable type (indices, strings, bools);
    equality decides. Counts are returned as ``{prefix}_n`` and ``{prefix}_n_{group}``.
    Groups appear in sorted order.
    """
    pred = _as_list(predictions)
    tgt = _as_list(targets)
    if len(pred) != len(tgt):
        raise ValueError(f"{len(pred)} predictions but {len(tgt)} targets")
    if groups is not None:
        groups = _as_list(groups)
        if len(groups) != len(tgt):
            raise ValueError(f"{len(groups)} groups but {len(tgt)} targets")
    correct = np.asarray([p == t for p, t in zip(pred, tgt)], dtype=bool)
    out: dict[str, float] = {
        f"{prefix}_acc": float(correct.mean()) if len(correct) else float("nan"),
        f"{prefix}_n": float(len(correct)),
    }
    if groups is not None:
        garr = np.asarray([str(g) for g in groups], dtype=object)
        for g in sorted(set(garr.tolist())):
            sel = garr == g
            out[f"{prefix}_acc_{g}"] = float(correct[sel].mean())
            out[f"{prefix}_n_{g}"] = float(sel.sum())
    return out


def vqa_accuracy(
    predictions: Sequence[Any] | Tensor | np.ndarray,
    answers: Sequence[Any] | Tensor | np.ndarray,
    question_types: Sequence[str] | None = None,
) -> dict[str, float]:
    """VQA accuracy, overall (``vqa_acc``) and per question type (``vqa_acc_color`` …).

    One reference answer per question (our task file), so accuracy is exact match of the
    predicted answer (index or string) with the reference.
    """
    return grouped_accuracy(predictions, answers, question_types, "vqa")


def ve_accuracy(
    predictions: Sequence[Any] | Tensor | np.ndarray,
    labels: Sequence[Any] | Tensor | np.ndarray,
) -> dict[str, float]:
    """Visual-entailment accuracy overall (``ve_acc``) and per *true* label
    (``ve_acc_entailment`` …, i.e. the recall of each label)."""
    return grouped_accuracy(predictions, labels, _as_list(labels), "ve")


def nlvr2_accuracy(
    predictions: Sequence[bool] | Tensor | np.ndarray,
    labels: Sequence[bool] | Tensor | np.ndarray,
    kinds: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """NLVR2 accuracy (``nlvr2_acc``), per true label (``nlvr2_acc_True``/``_False``) and,
    with ``kinds``, per statement form (``nlvr2_acc_both``, ``nlvr2_acc_compare`` …; examples
    whose kind is ``None`` count only overall).

    With ``kinds`` also ``nlvr2_form_prior_acc``: the accuracy of answering each statement
    form's majority label of these very examples (on the examples with a kind). No model that
    reads only the statement's form does better; a model near it does not read the images.
    """
    pred = [bool(p) for p in _as_list(predictions)]
    tgt = [bool(t) for t in _as_list(labels)]
    out = grouped_accuracy(pred, tgt, tgt, "nlvr2")
    if kinds is not None:
        kinds = _as_list(kinds)
        if len(kinds) != len(tgt):
            raise ValueError(f"{len(kinds)} statement kinds but {len(tgt)} labels")
        keep = [i for i, k in enumerate(kinds) if k is not None]
        if keep:
            by_kind = grouped_accuracy(
                [pred[i] for i in keep], [tgt[i] for i in keep], [kinds[i] for i in keep], "nlvr2"
            )
            out.update({k: v for k, v in by_kind.items() if k not in ("nlvr2_acc", "nlvr2_n")})
            per_kind = Counter((kinds[i], tgt[i]) for i in keep)
            majority = sum(
                max(per_kind[(k, True)], per_kind[(k, False)]) for k in {kinds[i] for i in keep}
            )
            out["nlvr2_form_prior_acc"] = majority / len(keep)
    return out


def format_metrics_table(metrics: Mapping[str, float], title: str | None = None) -> str:
    """A two-column plain-text table; fractions (``*_acc*``, ``R@K``) printed as percent."""
    rows = []
    for key, value in metrics.items():
        if not isinstance(value, (int, float)):
            continue
        if "_acc" in key or "R@" in key or "@1" in key or key.endswith("_frac"):
            text = f"{100.0 * value:6.2f} %"
        elif (
            key.endswith("_n")
            or "_n_" in key
            or key.startswith("num_")
            or key == "images_without_captions"
        ):
            text = f"{int(value)}"
        else:
            text = f"{value:.2f}"
        rows.append((key, text))
    width = max([len(k) for k, _ in rows] + [6])
    lines = [title] if title else []
    lines += [f"{'metric':<{width}}  value", f"{'-' * width}  ---------"]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
