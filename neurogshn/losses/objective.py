r"""The pretraining objective: ITC + spatio-temporal CL + STL + ITM, weighted.

.. math::
    \mathcal{L} = \lambda_{ITC}\mathcal{L}_{ITC} + \lambda_{CL}\mathcal{L}_{CL}
      + \lambda_{STL}\mathcal{L}_{STL}
      + \lambda_{ITM}(\mathcal{L}_{ITM} + \gamma\,\mathcal{L}_{ground}
      + \rho\,\mathcal{L}_{rel} + \kappa\,\mathcal{L}_{concept})

with :math:`\gamma` = ``itm_grounding_weight`` (the phrase-grounding term of the ITM head,
:mod:`neurogshn.losses.grounding`; computed only when the batch carries groundings) and
:math:`\rho` = ``itm_relation_weight`` (masked relation prediction,
:mod:`neurogshn.losses.relation`; on the captions that state a relation) and :math:`\kappa` =
``itm_concept_weight`` (masked concept prediction, same module; only with an
``itm_concept_vocab``, on every mention of one of its phrases). With ``itm_text_prior``
the relation and concept terms each add the cross-entropy of their text-only prior
(:mod:`neurogshn.model.text_prior`), which reads detached text states and so trains nothing
else.

A weight of 0 skips the loss entirely (not computed). The text encoder runs once per step on
the captions and the non-missing hard negatives together.

Usage::

    objective = PretrainingObjective()          # the model config's weights
    out = objective(model, PretrainBatch(graphs, captions, hard_negatives))
    out["loss"].backward()

Returned keys: ``loss`` (weighted total), the unweighted loss of each active objective
(``itc``, ``cl``, ``stl``, ``itm``, ``itm_grounding``, ``itm_relation``, ``itm_concept``, and
with ``itm_text_prior`` the text priors' ``itm_relation_prior``, ``itm_concept_prior``) and
detached diagnostics under ``diag/``: ``diag/fusion_ratio``, ``diag/spike_rate_l{k}``,
``diag/itc_temperature``, ``diag/stl_temperature``, ``diag/itm_accuracy``,
``diag/grounding_accuracy``, ``diag/relation_accuracy``, ``diag/concept_accuracy``,
``diag/text_spike_rate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Batch

from neurogshn.errors import ConfigError
from neurogshn.losses.contrastive import spatiotemporal_cl_loss
from neurogshn.losses.grounding import PhraseNodes, grounding_loss, grounding_targets
from neurogshn.losses.itc import itc_loss, same_text_mask
from neurogshn.losses.itm import itm_loss
from neurogshn.losses.relation import (
    NO_RELATION_KIND,
    MaskedLogits,
    count_loss,
    masked_concept_logits,
    masked_relation_logits,
    pointer_loss,
    unrelated_pair_logits,
)
from neurogshn.losses.stl import stl_loss

LOSS_NAMES = ("itc", "cl", "stl", "itm")
_HEADS = {"itc": "itc_scale", "cl": "cl_head", "stl": "stl_projector", "itm": "itm_head"}


@dataclass
class PretrainBatch:
    """One pretraining batch.

    Attributes:
        graphs: ``B`` scene graphs (PyG ``Batch``).
        captions: ``B`` captions, caption ``i`` describes graph ``i``.
        hard_negatives: ``B`` entries, the relation-/attribute-swapped twin of caption ``i`` or
            ``None``.
        groundings: ``B`` entries (or ``None``: no grounding), the grounded phrases of caption
            ``i`` as ``(char start, char end, node indices within graph i)``
            (:func:`neurogshn.training.data.phrase_nodes`).
        hard_negative_kinds: ``B`` entries (or ``None``: unknown), the kind of each hard
            negative (``relation_swap`` …; ``None`` where there is none). Needed by the
            *no relation* class of masked relation prediction (``itm_relation_none``).
    """

    graphs: Batch
    captions: list[str]
    hard_negatives: list[str | None]
    groundings: list[Sequence[PhraseNodes]] | None = None
    hard_negative_kinds: list[str | None] | None = None

    def __post_init__(self) -> None:
        b = int(self.graphs.num_graphs)
        if len(self.captions) != b:
            raise ValueError(f"{len(self.captions)} captions for {b} graphs")
        if not self.hard_negatives:
            self.hard_negatives = [None] * b
        if len(self.hard_negatives) != b:
            raise ValueError(f"{len(self.hard_negatives)} hard negatives for {b} graphs")
        if self.groundings is not None and len(self.groundings) != b:
            raise ValueError(f"{len(self.groundings)} groundings for {b} graphs")
        if self.hard_negative_kinds is not None and len(self.hard_negative_kinds) != b:
            raise ValueError(f"{len(self.hard_negative_kinds)} hard-negative kinds for {b} graphs")

    def kinds(self) -> list[str | None]:
        """The kind of each hard negative (``None`` where unknown or absent)."""
        if self.hard_negative_kinds is None:
            return [None] * len(self.hard_negatives)
        return list(self.hard_negative_kinds)

    def to(self, device: torch.device | str) -> PretrainBatch:
        return PretrainBatch(
            self.graphs.to(device),
            self.captions,
            self.hard_negatives,
            self.groundings,
            self.hard_negative_kinds,
        )


class MaskedLoss(NamedTuple):
    """Masked relation or concept prediction on a batch: the classifier's cross-entropy, its
    detached accuracy and, with a text prior (``itm_text_prior``), the prior's cross-entropy
    (its gradient reaches the prior alone: it reads detached text states). With
    ``itm_relation_none`` the cross-entropy also covers the unrelated pairs, whose detached
    accuracy is ``none_accuracy`` (``accuracy`` stays that on the captions). With
    ``itm_relation_geometry`` and groundings, the pointers' grounding loss and accuracy
    (:func:`~neurogshn.losses.relation.pointer_loss`); with ``itm_concept_count``, the node
    count's loss and accuracy (:func:`~neurogshn.losses.relation.count_loss`)."""

    loss: Tensor
    accuracy: Tensor
    prior_loss: Tensor | None = None
    none_accuracy: Tensor | None = None
    pointer_loss: Tensor | None = None
    pointer_accuracy: Tensor | None = None
    count_loss: Tensor | None = None
    count_accuracy: Tensor | None = None


def masked_relation_loss(
    model: Any,
    captions: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    image: Any,
    unrelated: Sequence[tuple[int, str]] = (),
    groundings: Sequence[Sequence[PhraseNodes] | None] | None = None,
) -> MaskedLoss | None:
    """Masked relation prediction (:mod:`neurogshn.losses.relation`) on the captions that
    state a relation, and with ``itm_relation_none`` on ``unrelated`` (``(batch row, text)``
    of the ``unrelated_pair`` hard negatives; target *no relation*); with
    ``itm_relation_geometry`` and the captions' ``groundings``, the pointers' grounding
    (:func:`~neurogshn.losses.relation.pointer_loss`). ``None`` when there is nothing to
    predict."""
    pos = None if image.node_pos is None else image.dense_nodes(image.node_pos)[0]
    found = masked_relation_logits(model, captions, nodes, node_mask, pos)
    none = None
    if unrelated and getattr(model.config, "itm_relation_none", False):
        rows = torch.tensor([r for r, _ in unrelated], device=nodes.device)
        none = unrelated_pair_logits(
            model,
            [t for _, t in unrelated],
            nodes[rows],
            node_mask[rows],
            None if pos is None else pos[rows],
        )
    result = _masked_loss(found, none)
    if result is None or found is None or groundings is None:
        return result
    pointer = pointer_loss(found, groundings)
    if pointer is None:
        return result
    return result._replace(pointer_loss=pointer[0], pointer_accuracy=pointer[1])


def masked_concept_loss(
    model: Any, captions: Sequence[str], nodes: Tensor, node_mask: Tensor, image: Any
) -> MaskedLoss | None:
    """Masked concept prediction (:func:`~neurogshn.losses.relation.masked_concept_logits`)
    on every concept mention of the captions, with ``itm_concept_count`` the count's
    supervision on the number words (:func:`~neurogshn.losses.relation.count_loss`), or
    ``None``."""
    pos = None if image.node_pos is None else image.dense_nodes(image.node_pos)[0]
    found = masked_concept_logits(model, captions, nodes, node_mask, pos)
    result = _masked_loss(found)
    if result is None or found is None:
        return result
    count = count_loss(found, model.config.itm_concept_vocab)
    if count is None:
        return result
    return result._replace(count_loss=count[0], count_accuracy=count[1])


def _masked_loss(found: MaskedLogits | None, none: MaskedLogits | None = None) -> MaskedLoss | None:
    parts = [p for p in (found, none) if p is not None]
    if not parts:
        return None
    cross_entropy = torch.nn.functional.cross_entropy
    logits, targets = torch.cat([p.logits for p in parts]), torch.cat([p.targets for p in parts])
    prior_loss = None
    if found is not None and found.prior_logits is not None:
        prior_loss = cross_entropy(found.prior_logits, found.targets)
    return MaskedLoss(
        cross_entropy(logits, targets),
        _accuracy(parts[0]),
        prior_loss,
        None if none is None else _accuracy(none),
    )


def _accuracy(found: MaskedLogits) -> Tensor:
    return (found.logits.argmax(-1) == found.targets).float().mean().detach()


def _add_masked_loss(
    out: dict[str, Tensor], name: str, result: MaskedLoss | None, weight: float
) -> Tensor | float:
    """Log ``itm_<name>`` (and ``itm_<name>_prior``) and ``diag/<name>_accuracy``; return the
    weighted contribution to the total."""
    if result is None:
        return 0.0
    out[f"itm_{name}"], out[f"diag/{name}_accuracy"] = result.loss, result.accuracy
    if result.none_accuracy is not None:
        out[f"diag/{name}_none_accuracy"] = result.none_accuracy
    total = result.loss
    if result.prior_loss is not None:
        out[f"itm_{name}_prior"] = result.prior_loss
        total = total + result.prior_loss
    if result.pointer_loss is not None:
        out[f"itm_{name}_pointer"] = result.pointer_loss
        out[f"diag/{name}_pointer_accuracy"] = result.pointer_accuracy
        total = total + result.pointer_loss
    if result.count_loss is not None:
        out[f"itm_{name}_count"] = result.count_loss
        out[f"diag/{name}_count_accuracy"] = result.count_accuracy
        total = total + result.count_loss
    return weight * total


class PretrainingObjective:
    """Weighted sum of the pretraining losses.

    Args:
        weights: ``{"itc": w, "cl": w, "stl": w, "itm": w}`` (any subset; an object with those
            attributes, e.g. the trainer's ``LossWeights``, works too); a missing or ``None``
            entry takes the model config's ``<name>_weight``.
    """

    def __init__(self, weights: Mapping[str, float | None] | Any | None = None) -> None:
        if weights is None:
            weights = {}
        elif dataclasses.is_dataclass(weights):
            weights = dataclasses.asdict(weights)
        elif not isinstance(weights, Mapping):
            weights = {k: getattr(weights, k, None) for k in LOSS_NAMES}
        unknown = set(weights) - set(LOSS_NAMES)
        if unknown:
            raise ConfigError(f"unknown loss weight(s) {sorted(unknown)}; known: {LOSS_NAMES}")
        self.weights = {k: (None if v is None else float(v)) for k, v in weights.items()}

    def resolve(self, model: Any) -> dict[str, float]:
        """The effective weights for ``model`` (checks that each active loss has its head)."""
        out = {}
        for name in LOSS_NAMES:
            w = self.weights.get(name)
            if w is None:
                w = float(getattr(model.config, f"{name}_weight"))
            if w < 0:
                raise ConfigError(f"loss weight {name} must be >= 0, got {w}")
            if w > 0 and not hasattr(model, _HEADS[name]):
                raise ConfigError(
                    f"loss {name!r} has weight {w} but the model was built with "
                    f"{name}_weight=0 (no {_HEADS[name]}); set {name}_weight in the model config"
                )
            out[name] = w
        return out

    def uses_grounding(self, model: Any) -> bool:
        """Whether the ITM grounding term is active for ``model`` (then batches should carry
        ``groundings``)."""
        return self.resolve(model)["itm"] > 0 and model.config.itm_grounding_weight > 0

    def __call__(self, model: Any, batch: PretrainBatch) -> dict[str, Tensor]:
        w = self.resolve(model)
        device = model.device
        image = model.encode_image(batch.graphs)
        b = image.num_graphs
        out: dict[str, Tensor] = {}
        total = image.image_embeds.new_zeros(())

        need_text = any(w[k] > 0 for k in ("itc", "stl", "itm"))
        if need_text:
            neg_rows = [i for i, h in enumerate(batch.hard_negatives) if h]
            negs = [batch.hard_negatives[i] for i in neg_rows]
            text = model.encode_text(list(batch.captions) + negs)
            cap_emb, neg_emb = text.text_embeds[:b], text.text_embeds[b:]
            all_texts = list(batch.captions) + negs
            targets = same_text_mask(list(batch.captions), all_texts, device=device)
            same_caption = targets[:, :b]

        if w["itc"] > 0:
            scale = model.itc_scale()
            out["itc"] = itc_loss(image.image_embeds, cap_emb, scale, neg_emb, targets)
            out["diag/itc_temperature"] = (1.0 / scale).detach()
            total = total + w["itc"] * out["itc"]

        if w["cl"] > 0:
            c = model.config
            out["cl"] = spatiotemporal_cl_loss(
                image.spikes[-1],
                image.node_batch,
                b,
                model.cl_head,
                windows=c.cl_windows,
                temperature=c.cl_temperature,
                max_nodes=c.cl_max_nodes,
            )
            total = total + w["cl"] * out["cl"]

        if w["stl"] > 0:
            proj = model.stl_projector
            tokens = text.token_embeds[:b]
            if model.config.stl_detach_text:
                tokens = tokens.detach()
            _, token_codes = proj(tokens)
            node_codes, node_mask = image.dense_nodes(image.snn_latent)
            out["stl"] = stl_loss(
                node_codes,
                node_mask,
                token_codes,
                text.token_mask[:b],
                proj.scale(),
                model.config.stl_token_weight,
                same_caption,
            )
            out["diag/stl_temperature"] = (1.0 / proj.scale()).detach()
            out["diag/text_spike_rate"] = token_codes.detach()[text.token_mask[:b]].mean()
            total = total + w["stl"] * out["stl"]

        if w["itm"] > 0:
            nodes, node_mask = image.dense_nodes()
            sim = None
            if model.config.itm_batch_negatives:
                sim = image.image_embeds.detach() @ cap_emb.detach().T
            owner = torch.tensor(neg_rows, dtype=torch.long, device=device)
            ground = None
            if model.config.itm_grounding_weight > 0 and batch.groundings is not None:
                offsets = model.text_encoder.token_offsets(list(batch.captions))
                ground = grounding_targets(offsets, batch.groundings, device)
            result = itm_loss(
                model.itm_head,
                nodes,
                node_mask,
                text.token_embeds[:b],
                text.attention_mask[:b],
                same_caption,
                sim,
                text.token_embeds[b:],
                text.attention_mask[b:],
                owner,
                None if image.node_pos is None else image.dense_nodes(image.node_pos)[0],
                return_attention=ground is not None,
            )
            out["itm"], out["diag/itm_accuracy"] = result.loss, result.accuracy
            total = total + w["itm"] * out["itm"]
            if ground is not None and result.attention is not None:
                out["itm_grounding"], out["diag/grounding_accuracy"] = grounding_loss(
                    result.attention, ground
                )
                total = total + w["itm"] * model.config.itm_grounding_weight * out["itm_grounding"]
            if model.config.itm_relation_weight > 0 and model.itm_head.relation_head is not None:
                unrelated = [
                    (i, h)
                    for i, (h, kind) in enumerate(zip(batch.hard_negatives, batch.kinds()))
                    if h and kind == NO_RELATION_KIND
                ]
                relation = masked_relation_loss(
                    model, batch.captions, nodes, node_mask, image, unrelated, batch.groundings
                )
                weight = w["itm"] * model.config.itm_relation_weight
                total = total + _add_masked_loss(out, "relation", relation, weight)
            if model.itm_head.concept_head is not None:
                concept = masked_concept_loss(model, batch.captions, nodes, node_mask, image)
                weight = w["itm"] * model.config.itm_concept_weight
                total = total + _add_masked_loss(out, "concept", concept, weight)

        out["loss"] = total
        if image.fusion_ratio is not None:
            out["diag/fusion_ratio"] = image.fusion_ratio.detach()
        for k, r in enumerate(image.spike_rates):
            out[f"diag/spike_rate_l{k}"] = r
        return out
