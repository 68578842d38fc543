r"""The pretraining objective: ITC + spatio-temporal CL + STL + ITM, weighted.

.. math::
    \mathcal{L} = \lambda_{ITC}\mathcal{L}_{ITC} + \lambda_{CL}\mathcal{L}_{CL}
      + \lambda_{STL}\mathcal{L}_{STL}
      + \lambda_{ITM}(\mathcal{L}_{ITM} + \gamma\,\mathcal{L}_{ground}
      + \mu\,\mathcal{L}_{MLM})

with :math:`\gamma` = ``itm_grounding_weight`` (the phrase-grounding term of the ITM head,
:mod:`neurogshn.losses.grounding`, plus the referent gate's cross-entropy when the head has
the grounded relation term; computed only when the batch carries groundings) and
:math:`\mu` = ``itm_mlm_weight`` (image-conditioned masked language modelling over the text
model's vocabulary on the same cross-encoder, :mod:`neurogshn.losses.mlm`). The ITM negatives
are the batch's hard negatives of whatever kinds the data has, all treated alike.

A weight of 0 skips the loss entirely (not computed). The text encoder runs once per step on
the captions and the non-missing hard negatives together.

Usage::

    objective = PretrainingObjective()          # the model config's weights
    out = objective(model, PretrainBatch(graphs, captions, hard_negatives))
    out["loss"].backward()

Returned keys: ``loss`` (weighted total), the unweighted loss of each active objective
(``itc``, ``cl``, ``stl``, ``itm``, ``itm_grounding``, ``itm_referent`` — weighted like the
grounding term —, ``itm_mlm``) and detached diagnostics
under ``diag/``: ``diag/fusion_ratio``, ``diag/spike_rate_layer{k}``, ``diag/itc_temperature``,
``diag/stl_temperature``, ``diag/itm_accuracy``, ``diag/grounding_accuracy``,
``diag/referent_accuracy``,
``diag/mlm_accuracy`` (hidden pieces read with the image), ``diag/mlm_prior_accuracy`` (with
the null image), ``diag/text_spike_rate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.profiler import record_function
from torch_geometric.data import Batch

from neurogshn.errors import ConfigError
from neurogshn.losses.contrastive import spatiotemporal_cl_loss
from neurogshn.losses.grounding import (
    PhraseNodes,
    grounding_loss,
    grounding_targets,
    referent_loss,
)
from neurogshn.losses.itc import itc_loss, same_text_mask
from neurogshn.losses.itm import itm_loss
from neurogshn.losses.mlm import mlm_loss
from neurogshn.losses.stl import stl_loss
from neurogshn.utils.names import layer_name

if TYPE_CHECKING:
    from neurogshn.model.gshn import GSHN

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
            negative as the data's file names it (``None`` where there is none); not used
            by the losses, which treat every kind alike.
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

    def resolve(self, model: GSHN) -> dict[str, float]:
        """The effective weights for ``model`` (checks that each active loss has its head)."""
        out = {}
        for name in LOSS_NAMES:
            w = self.weights.get(name)
            if w is None:
                w = float(getattr(model.config, f"{name}_weight"))
            if w < 0:
                raise ConfigError(f"loss weight {name} must be >= 0, got {w}")
            if w > 0 and getattr(model, _HEADS[name], None) is None:
                raise ConfigError(
                    f"loss {name!r} has weight {w} but the model was built with "
                    f"{name}_weight=0 (no {_HEADS[name]}); set {name}_weight in the model config"
                )
            out[name] = w
        return out

    def uses_grounding(self, model: GSHN) -> bool:
        """Whether the ITM grounding term is active for ``model`` (then batches should carry
        ``groundings``)."""
        return self.resolve(model)["itm"] > 0 and model.config.itm_grounding_weight > 0

    def __call__(self, model: GSHN, batch: PretrainBatch) -> dict[str, Tensor]:
        w = self.resolve(model)
        device = model.device
        with record_function("model/encode_image"):
            image = model.encode_image(batch.graphs)
        b = image.num_graphs
        out: dict[str, Tensor] = {}
        total = image.image_embeds.new_zeros(())

        need_text = any(w[k] > 0 for k in ("itc", "stl", "itm"))
        if need_text:
            neg_rows = [i for i, h in enumerate(batch.hard_negatives) if h]
            negs = [batch.hard_negatives[i] for i in neg_rows]
            with record_function("model/encode_text"):
                text = model.encode_text(list(batch.captions) + negs)
            cap_emb, neg_emb = text.text_embeds[:b], text.text_embeds[b:]
            all_texts = list(batch.captions) + negs
            targets = same_text_mask(list(batch.captions), all_texts, device=device)
            same_caption = targets[:, :b]

        if w["itc"] > 0:
            with record_function("loss/itc"):
                scale = model.itc_scale()
                out["itc"] = itc_loss(image.image_embeds, cap_emb, scale, neg_emb, targets)
                out["diag/itc_temperature"] = (1.0 / scale).detach()
                total = total + w["itc"] * out["itc"]

        if w["cl"] > 0:
            with record_function("loss/cl"):
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
            with record_function("loss/stl"):
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
            with record_function("loss/itm"):
                nodes, node_mask = image.dense_nodes()
                sim = None
                if model.config.itm_batch_negatives:
                    sim = image.image_embeds.detach() @ cap_emb.detach().T
                owner = torch.tensor(neg_rows, dtype=torch.long, device=device)
                ground = None
                if model.config.itm_grounding_weight > 0 and batch.groundings is not None:
                    offsets = model.text_encoder.token_offsets(list(batch.captions))
                    ground = grounding_targets(offsets, batch.groundings, device)
                relation = model.itm_head.relation
                words = text.word_states if relation is not None else None
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
                    word_states=None if words is None else words[:b],
                    negative_word_states=None if words is None else words[b:],
                )
                out["itm"], out["diag/itm_accuracy"] = result.loss, result.accuracy
                total = total + w["itm"] * out["itm"]
                if ground is not None and result.attention is not None:
                    out["itm_grounding"], out["diag/grounding_accuracy"] = grounding_loss(
                        result.attention, ground
                    )
                    grounding = out["itm_grounding"]
                    if relation is not None and words is not None:
                        out["itm_referent"], out["diag/referent_accuracy"] = referent_loss(
                            relation.referent_logits(words[:b]), ground, text.attention_mask[:b]
                        )
                        grounding = grounding + out["itm_referent"]
                    total = total + w["itm"] * model.config.itm_grounding_weight * grounding
            if model.config.itm_mlm_weight > 0 and model.itm_head.token_head is not None:
                with record_function("loss/itm_mlm"):
                    pos = None if image.node_pos is None else image.dense_nodes(image.node_pos)[0]
                    spans = None
                    if model.config.itm_mlm_mask_ungrounded and batch.groundings is not None:
                        spans = [
                            None if g is None else [(start, end) for start, end, _ in g]
                            for g in batch.groundings
                        ]
                    predicted = model.masked_word_logits(
                        list(batch.captions),
                        nodes,
                        node_mask,
                        pos,
                        list(batch.hard_negatives),
                        spans,
                    )
                    if predicted is not None:
                        mlm = mlm_loss(predicted)
                        out["itm_mlm"] = mlm.loss
                        out["diag/mlm_accuracy"] = mlm.accuracy
                        if not torch.isnan(mlm.prior_accuracy):
                            out["diag/mlm_prior_accuracy"] = mlm.prior_accuracy
                        total = total + w["itm"] * model.config.itm_mlm_weight * mlm.loss

        out["loss"] = total
        if image.fusion_ratio is not None:
            out["diag/fusion_ratio"] = image.fusion_ratio.detach()
        for k, r in enumerate(image.spike_rates):
            out[f"diag/spike_rate_{layer_name(k)}"] = r
        return out
