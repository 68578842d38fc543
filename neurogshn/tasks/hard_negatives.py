"""Hard-negative diagnostics: a true caption against its altered twin, same image, per kind
of negative the file has (``relation_swap``, ``attribute_swap`` … on the relational-scenes
benchmark; whatever kinds a user's file names), by the ITC cosine, the ITM score or both fused,
with a blind control against another image."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.data.tasks import item_negatives
from neurogshn.tasks.encode import collate_graphs, encode_texts, model_device
from neurogshn.tasks.metrics import hard_negative_metrics
from neurogshn.tasks.rerank import FUSED_ITC_WEIGHT, itc_logit_scale


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


def use_itm(model: nn.Module, scorer: str) -> bool:
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
        enc = model.encode_image(collate_graphs([graphs[int(r)] for r in here_images]).to(dev))
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


def hard_negative_diagnostics(
    model: nn.Module,
    graphs: Sequence[Any],
    ids: Sequence[int],
    image_embeds: Tensor,
    items: Iterable[Any],
    batch_size: int = 64,
    scorer: str = "auto",
    itc_weight: float = FUSED_ITC_WEIGHT,
) -> dict[str, float]:
    """Hard-negative accuracies of the pool's images (``graphs`` with ``ids``, their ITC
    embeddings ``image_embeds``) on the triples of ``items`` (``scorer``: see
    ``hard_negative_scorer`` in :func:`~neurogshn.tasks.retrieval.evaluate_retrieval`): the
    chosen scorer's ``<kind>_acc`` first, then the blind control ``<kind>_acc_blind`` (every
    triple against the next image), then each scorer's ``<kind>_acc_itc|_itm|_fused``;
    ``num_hard_negative_triples``.

    Shapes:
        image_embeds ``I×E`` (rows in the order of ``ids``)
    """
    triples = hard_negative_triples(items, ids)
    out: dict[str, float] = {}
    if triples:
        row_of = {image_id: row for row, image_id in enumerate(ids)}
        rows = torch.tensor([row_of[t.image_id] for t in triples])
        kinds = [t.kind for t in triples]
        pos_t = encode_texts(model, [t.caption for t in triples], 4 * batch_size)
        neg_t = encode_texts(model, [t.negative for t in triples], 4 * batch_size)
        img = image_embeds[rows]
        itc = hard_negative_metrics((img * pos_t).sum(-1), (img * neg_t).sum(-1), kinds)
        per_scorer = {f"{k}_itc": v for k, v in itc.items() if k.endswith("_acc")}
        chosen = itc
        blind_rows = (rows + 1) % len(ids)
        blind_img = image_embeds[blind_rows]
        blind = hard_negative_metrics(
            (blind_img * pos_t).sum(-1), (blind_img * neg_t).sum(-1), kinds
        )
        if use_itm(model, scorer):
            pos_s, neg_s = itm_pair_scores(model, graphs, triples, rows, batch_size)
            pos_b, neg_b = itm_pair_scores(model, graphs, triples, blind_rows, batch_size)
            if scorer != "itm":  # fused: ITM + w · τ⁻¹ · cos
                w = itc_weight * itc_logit_scale(model)
                itm = hard_negative_metrics(pos_s, neg_s, kinds)
                per_scorer.update({f"{k}_itm": v for k, v in itm.items() if k.endswith("_acc")})
                pos_s = pos_s + w * (img * pos_t).sum(-1)
                neg_s = neg_s + w * (img * neg_t).sum(-1)
                pos_b = pos_b + w * (blind_img * pos_t).sum(-1)
                neg_b = neg_b + w * (blind_img * neg_t).sum(-1)
            chosen = hard_negative_metrics(pos_s, neg_s, kinds)
            suffix = "itm" if scorer == "itm" else "fused"
            per_scorer.update({f"{k}_{suffix}": v for k, v in chosen.items() if k.endswith("_acc")})
            blind = hard_negative_metrics(pos_b, neg_b, kinds)
        out.update(chosen)
        if len(ids) > 1:
            out.update({f"{k}_blind": v for k, v in blind.items() if k.endswith("_acc")})
        out.update(per_scorer)
    out["num_hard_negative_triples"] = float(len(triples))
    return out
