r"""The Graph Spiking Hybrid Network: scene graph + text → joint embeddings.

Image side, for a batch of scene graphs (PyG ``Batch``; node 0 of each graph is its global
node)::

    x ─► LayerNorm (host, `snn_input_norm`) ─► SpikingEncoder (Linear+LIF ×L, T steps)
    │        ─► E_SNN (rates of its last layer, N×H, values k/T) ─► SpikeReadout ─► N×D
    └─► GATStage (LayerNorm, Linear, GATv2 ×L with edge attributes) ─► F_GAT (N×D)
    V' = r·readout(E_SNN) + F_GAT           (mode "full"; "gat_only"/"snn_only" drop a branch)
    image = normalise(GraphPooling(V'))      (attention pooling ‖ global node, MLP)

What is exported to Loihi is ``model.snn_input_norm`` (a host-side per-node LayerNorm, not
spiking) followed by ``model.spiking_encoder``; everything else runs on the host.

Text side: :class:`~neurogshn.model.text.TextEncoder`. Objective heads (CL projection head,
STL spiking text projector, ITM head, ITC temperature) are built only when their weight in the
config is positive, so a weight of 0 leaves no unused parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.model.config import (
    GSHNConfig,
    config_from_name,
)
from neurogshn.model.fusion import GraphPooling, HybridFusion, SpikeReadout
from neurogshn.model.gat import GATStage
from neurogshn.model.heads import LogitScale, SpatioTemporalHead, SpikingTextProjector
from neurogshn.model.itm import ITMHead
from neurogshn.model.mlm import (
    CaptionWord,
    MaskedWordLogits,
    TokenStatistics,
    caption_words,
    masked_captions,
    masked_word_logits,
)
from neurogshn.model.persistence import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    fit_state_to_model,
    read_saved_config,
    saved_model_files,
)
from neurogshn.model.spiking import SpikingEncoder
from neurogshn.model.text import TextEncoder, TextEncoding
from neurogshn.utils.io import atomic_path, write_json_atomic
from neurogshn.utils.runtime import resolve_device
from neurogshn.utils.weights import read_safetensors

log = logging.getLogger(__name__)


@dataclass
class ImageEncoding:
    """What :meth:`GSHN.encode_image` returns.

    Attributes:
        image_embeds: ``B×D`` L2-normalised image embeddings.
        node_embeds: ``N×D`` fused node embeddings ``V'`` (not normalised).
        node_batch: ``N`` graph index of each node.
        spikes: per spiking layer ``T×N×H_l`` spike trains in {0, 1} (empty in ``gat_only``).
        snn_latent: ``N×H`` discrete latent ``E_SNN`` (last layer's rates, values ``k/T``),
            ``None`` in ``gat_only``.
        fusion_ratio: the learned ``r`` (scalar tensor) in ``full`` mode, else ``None``.
        spike_rates: per spiking layer, the mean firing probability per neuron and step
            (detached scalars).
        num_graphs: ``B``.
        voltages: per spiking layer ``T×N×H_l`` membrane potentials (after reset) when
            ``encode_image(..., record_voltages=True)``, else ``None``.
        node_pos: ``N×2`` node centroids (the graphs' ``pos``), ``None`` if they have none;
            the ITM head encodes them (``itm_node_position``).
    """

    image_embeds: Tensor
    node_embeds: Tensor
    node_batch: Tensor
    spikes: list[Tensor]
    snn_latent: Tensor | None
    fusion_ratio: Tensor | None
    spike_rates: list[Tensor]
    num_graphs: int
    voltages: list[Tensor] | None = None
    node_pos: Tensor | None = None

    def dense_nodes(self, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``values`` (default ``node_embeds``, ``N×*``) as ``B×N_max×*`` + ``B×N_max`` mask."""
        v = self.node_embeds if values is None else values
        return to_dense_batch(v, self.node_batch, batch_size=self.num_graphs)

    def select(self, rows: Tensor) -> ImageEncoding:
        """The encoding of the images ``rows`` (any order, repeats allowed): image and node
        embeddings and centroids, for scoring many (image, text) pairs from images encoded
        once. Spikes, voltages, latents and rates are dropped (empty / ``None``).

        Shapes:
            rows ``P`` (values in ``[0, B)``) → an encoding of ``P`` images.
        """
        rows = rows.to(self.node_batch.device)
        counts = torch.bincount(self.node_batch, minlength=self.num_graphs)
        starts = torch.cumsum(counts, 0) - counts
        sizes = counts[rows]
        node_batch = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), sizes)
        offsets = torch.arange(int(sizes.sum()), device=rows.device) - torch.repeat_interleave(
            torch.cumsum(sizes, 0) - sizes, sizes
        )
        index = torch.repeat_interleave(starts[rows], sizes) + offsets
        return ImageEncoding(
            image_embeds=self.image_embeds[rows],
            node_embeds=self.node_embeds[index],
            node_batch=node_batch,
            spikes=[],
            snn_latent=None,
            fusion_ratio=self.fusion_ratio,
            spike_rates=[],
            num_graphs=len(rows),
            node_pos=None if self.node_pos is None else self.node_pos[index],
        )


class GSHN(nn.Module):
    """Graph Spiking Hybrid Network (see module docstring).

    Args:
        config: the model configuration.
    """

    def __init__(self, config: GSHNConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        d = config.embed_dim
        if config.uses_snn:
            self.snn_input_norm = nn.LayerNorm(config.node_features)
            self.spiking_encoder = SpikingEncoder(
                config.node_features, config.snn_hidden, config.time_steps, config.neuron
            )
            self.snn_readout = SpikeReadout(self.spiking_encoder.out_features, d)
        if config.uses_gat:
            self.gat = GATStage(
                config.node_features,
                d,
                edge_features=config.edge_features,
                layers=config.gat_layers,
                heads=config.gat_heads,
                dropout=config.dropout,
                conv=config.gat_conv,
            )
        if config.mode == "full":
            self.fusion = HybridFusion(config.fusion_ratio_init)
        self.pooling = GraphPooling(d, config.pooling)
        self.text_encoder = TextEncoder(
            d,
            config.text_model,
            trainable_layers=config.text_trainable_layers,
            max_length=config.text_max_length,
            cache_size=config.text_cache_size,
        )
        # the training heads: present when their loss has a weight in the config, else None
        self.itc_scale: LogitScale | None = None
        self.cl_head: SpatioTemporalHead | None = None
        self.stl_projector: SpikingTextProjector | None = None
        self.itm_head: ITMHead | None = None
        self.token_statistics: TokenStatistics | None = None
        self._build_heads()
        self._freeze_untrained_parts()

    def _freeze_untrained_parts(self) -> None:
        """Parts that no active objective trains are frozen (``requires_grad=False``), so that
        data-parallel training sees no unused trainable parameter. ``sentence_proj`` and the
        image pooling are trained by ITC only; ``token_proj`` by ITM (and by STL when
        ``stl_detach_text`` is off); the top text layers by any of these; the GAT stage, the
        spike readout and the fusion ratio by ITC or ITM. With the default weights nothing is
        frozen. A fine-tuning head that needs a frozen part turns it back on with
        ``requires_grad_(True)``."""
        c = self.config
        te = self.text_encoder
        sentence = c.itc_weight > 0
        token = c.itm_weight > 0 or (c.stl_weight > 0 and not c.stl_detach_text)
        te.sentence_proj.requires_grad_(sentence)
        te.token_proj.requires_grad_(token)
        for layer in te.top_layers:
            layer.requires_grad_(sentence or token)
        self.pooling.requires_grad_(sentence)
        nodes_used = c.itc_weight > 0 or c.itm_weight > 0
        for name in ("gat", "snn_readout", "fusion"):
            if hasattr(self, name):
                getattr(self, name).requires_grad_(nodes_used)

    def _build_heads(self) -> None:
        c = self.config
        if c.itc_weight > 0:
            self.itc_scale = LogitScale(c.temperature_init, c.max_logit_scale)
        if c.cl_weight > 0:
            self.cl_head = SpatioTemporalHead(self.spiking_encoder.out_features, c.cl_proj_dim)
        if c.stl_weight > 0:
            self.stl_projector = SpikingTextProjector(
                c.embed_dim,
                self.spiking_encoder.out_features,
                c.time_steps,
                c.neuron,
                c.temperature_init,
                c.max_logit_scale,
            )
        if c.itm_weight > 0:
            mlm = c.itm_mlm_weight > 0
            te = self.text_encoder
            self.itm_head = ITMHead(
                c.embed_dim,
                c.itm_heads,
                c.itm_layers,
                c.dropout,
                node_position=c.itm_node_position,
                self_attention=c.itm_self_attention,
                token_position=c.itm_token_position,
                max_tokens=c.text_max_length,
                attention_sink=c.itm_attention_sink,
                vocab_size=te.word_embeddings.shape[0] if mlm else 0,
                word_dim=te.hidden_size,
                relative_positions=c.itm_relative_positions,
                grounded_geometry=c.itm_grounded_geometry,
                grounded_relation=c.itm_grounded_relation,
            )
            if mlm:
                self.token_statistics = TokenStatistics(te.word_embeddings.shape[0])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config_name(cls, name: str = "default", **overrides: Any) -> GSHN:
        """Build the named configuration (``"gshn-tiny"``, ``"gshn-small"`` = ``"default"``,
        ``"gshn-base"``) with ``overrides`` of :class:`GSHNConfig` fields."""
        return cls(config_from_name(name, **overrides))

    @property
    def device(self) -> torch.device:
        return self.pooling.out[0].weight.device

    @property
    def fusion_ratio(self) -> float | None:
        """The learned fusion ratio ``r`` (``None`` unless ``mode == "full"``)."""
        return float(self.fusion.ratio.detach()) if self.config.mode == "full" else None

    def reset_parameters(self) -> None:
        """Re-initialise everything except the pretrained text transformer."""
        for name, module in self.named_children():
            if name == "text_encoder":
                module.token_proj.reset_parameters()
                module.sentence_proj.reset_parameters()
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()

    # ------------------------------------------------------------------ encoders
    def encode_image(self, graphs: Batch | Data, record_voltages: bool = False) -> ImageEncoding:
        """Encode a batch of scene graphs.

        Args:
            graphs: a PyG ``Batch`` (or a single ``Data``) with ``x``, ``edge_index``,
                ``edge_attr``; node 0 of each graph is its global node. Moved to the model's
                device.
            record_voltages: also return the spiking layers' membrane potentials (for
                visualisation; costs memory).

        Returns:
            :class:`ImageEncoding`.
        """
        if isinstance(graphs, Data) and not isinstance(graphs, Batch):
            graphs = Batch.from_data_list([graphs])
        graphs = graphs.to(self.device)
        x = graphs.x.to(self.pooling.out[0].weight.dtype)
        num_graphs = int(graphs.num_graphs)
        node_batch = graphs.batch
        if node_batch is None:
            node_batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        ptr = getattr(graphs, "ptr", None)
        if ptr is None:
            ptr = torch.tensor([0, x.shape[0]], device=x.device)
        global_index = ptr[:-1]
        if x.shape[1] != self.config.node_features:
            raise ConfigError(
                f"graphs have {x.shape[1]} node features but the model expects "
                f"{self.config.node_features} (config.node_features)"
            )
        spikes: list[Tensor] = []
        latent = None
        voltages = None
        rates: list[Tensor] = []
        snn_part = gat_part = None
        if self.config.uses_snn:
            out = self.spiking_encoder(self.snn_input_norm(x), record_voltages=record_voltages)
            voltages = out.voltages
            spikes, latent = out.spikes, out.latent
            rates = [s.detach().mean() for s in spikes]
            snn_part = self.snn_readout(latent)
        if self.config.uses_gat:
            edge_attr = getattr(graphs, "edge_attr", None)
            if edge_attr is not None:
                edge_attr = edge_attr.to(x.dtype)
            gat_part = self.gat(x, graphs.edge_index, edge_attr)
        ratio = None
        if self.config.mode == "full":
            nodes = self.fusion(snn_part, gat_part)
            ratio = self.fusion.ratio
        else:
            nodes = gat_part if snn_part is None else snn_part
        image = self.pooling(nodes, node_batch, global_index, num_graphs)
        image = nn.functional.normalize(image, dim=-1)
        pos = getattr(graphs, "pos", None)
        if pos is not None:
            pos = pos.to(x.dtype)
        return ImageEncoding(
            image, nodes, node_batch, spikes, latent, ratio, rates, num_graphs, voltages, pos
        )

    def encode_text(self, texts: list[str]) -> TextEncoding:
        """Encode captions: ``TextEncoding(text_embeds B×D normalised, token_embeds B×L×D,
        attention_mask B×L, token_mask B×L)``."""
        return self.text_encoder(texts)

    def forward(self, graphs: Batch | Data, texts: list[str]) -> tuple[ImageEncoding, TextEncoding]:
        return self.encode_image(graphs), self.encode_text(texts)

    # ------------------------------------------------------------------ matching
    def itm_scores(
        self, image: ImageEncoding, text: TextEncoding, texts: list[str] | None = None
    ) -> Tensor:
        r"""Match scores of the pairs (image ``i``, text ``i``) of two encodings of the same
        length ``B`` (needs ``itm_weight > 0``):

        .. math::
            s = \text{logit}_{match} - \text{logit}_{no\,match}
                + \lambda\,\overline{\mathrm{PMI}}

        the second term only with the raw ``texts``, a masked-token head
        (``itm_mlm_weight > 0``) and :math:`\lambda` = ``itm_mlm_score_weight`` > 0: the mean
        over the text's content words of their image-conditioned pointwise mutual information
        (:meth:`mlm_evidence`, :mod:`neurogshn.model.mlm`).

        Shapes:
            returns ``B``.
        """
        score = self._itm_logit_scores(image, text)
        weight = self.config.itm_mlm_score_weight
        if texts is not None and weight > 0 and self.has_token_head:
            score = score + weight * self.mlm_evidence(image, texts)[:, 0]
        return score

    def _itm_logit_scores(self, image: ImageEncoding, text: TextEncoding) -> Tensor:
        if self.itm_head is None:
            raise ConfigError("this model has no ITM head (itm_weight=0); use match_scores")
        if image.num_graphs != text.text_embeds.shape[0]:
            raise ValueError(
                f"{image.num_graphs} images but {text.text_embeds.shape[0]} texts; pairs are "
                "(image i, text i)"
            )
        nodes, node_mask, pos = _dense_inputs(image)
        return self.itm_head.score(
            text.token_embeds, text.attention_mask, nodes, node_mask, pos, text.word_states
        )

    @property
    def has_token_head(self) -> bool:
        """Whether the model has the masked-token head (``itm_mlm_weight > 0``)."""
        head = self.itm_head
        return head is not None and head.token_head is not None

    def fit_token_statistics(self, captions: list[str]) -> None:
        """Count the document frequency of each token over ``captions`` (the training
        captions): it decides which words masked language modelling masks most and which
        words the match score reads (:class:`~neurogshn.model.mlm.TokenStatistics`)."""
        if self.token_statistics is None:
            raise ConfigError("this model has no masked-token head (itm_mlm_weight=0)")
        te = self.text_encoder
        self.token_statistics.fit(te.tokenizer, captions, te.max_length)

    def masked_word_logits(
        self,
        captions: list[str],
        nodes: Tensor,
        node_mask: Tensor,
        node_pos: Tensor | None,
        contrasts: list[str | None] | None = None,
        phrases: Sequence[Sequence[tuple[int, int]] | None] | None = None,
    ) -> MaskedWordLogits | None:
        """The masked-token head's predictions for randomly masked copies of ``captions`` read
        with their images (dense ``nodes`` ``B×N×D``, ``node_mask`` ``B×N``) or the null image,
        as configured by ``itm_mlm_*`` (:func:`~neurogshn.model.mlm.masked_word_logits`);
        ``contrasts`` (a contrasting caption per caption, or ``None``) are used when
        ``itm_mlm_contrast_masks`` is on, ``phrases`` (per caption the character spans of
        its grounded phrases, or ``None``) when ``itm_mlm_mask_ungrounded`` is on."""
        c = self.config
        return masked_word_logits(
            self.text_encoder,
            self.itm_head,
            self.token_statistics,
            captions,
            nodes,
            node_mask,
            node_pos,
            c.itm_mlm_mask_rate,
            c.itm_mlm_copies,
            c.itm_mlm_image_dropout,
            contrasts if c.itm_mlm_contrast_masks else None,
            phrases if c.itm_mlm_mask_ungrounded else None,
        )

    def content_words(self, texts: list[str]) -> list[list[CaptionWord]]:
        """Per text, the words the match score reads: those in at most
        ``itm_mlm_content_fraction`` of the training captions, the ``itm_mlm_score_words``
        of highest inverse document frequency, in caption order."""
        c = self.config
        te = self.text_encoder
        stats = self.token_statistics
        out = []
        all_words = caption_words(te.tokenizer, texts, te.max_length)
        flat = stats.word_stats([w for words in all_words for w in words])
        for text, words in zip(texts, all_words, strict=True):
            here, flat = flat[: len(words)], flat[len(words) :]
            kept = [
                (weight, k, w)
                for k, (w, (weight, fraction)) in enumerate(zip(words, here, strict=True))
                if fraction <= c.itm_mlm_content_fraction
                and any(ch.isalnum() for ch in text[w.start : w.end])
            ]
            best = sorted(kept, key=lambda t: (-t[0], t[1]))[: c.itm_mlm_score_words]
            out.append([w for _, _, w in sorted(best, key=lambda t: t[1])])
        return out

    def word_pmi(self, image: ImageEncoding, texts: list[str]) -> tuple[Tensor, Tensor]:
        r"""Image-conditioned pointwise mutual information of each content word
        (:meth:`content_words`) of each text, masked in turn: :math:`\log p(w \mid
        \text{image}_i, t_i \setminus w) - \log q(w \mid t_i \setminus w)`, the
        log-probabilities summed over the word's pieces, ``q`` read with the null image.

        Shapes:
            returns the PMI ``W`` and the text index ``W`` of each word.
        """
        if not self.has_token_head:
            raise ConfigError("this model has no masked-token head (itm_mlm_weight=0)")
        te, head = self.text_encoder, self.itm_head
        groups = [[[w] for w in words] for words in self.content_words(texts)]
        masked = masked_captions(te.tokenizer, texts, groups, te.max_length, self.device)
        if not len(masked):
            empty = image.image_embeds.new_zeros(0)
            return empty, empty.long()
        # each distinct masked text through the text encoder once (a caption scored against
        # many images, as in re-ranking, repeats them)
        first: dict[str, int] = {}
        text_row: list[int] = []
        first_rows: list[int] = []  # the first row of each distinct text
        for row, t in enumerate(masked.texts):
            if t not in first:
                first[t] = len(first)
                first_rows.append(row)
            text_row.append(first[t])
        enc = te(list(first))
        text_row_t = torch.tensor(text_row, device=self.device)
        nodes, node_mask, pos = _dense_inputs(image)
        rows = masked.rows
        states = head.token_states(
            enc.token_embeds[text_row_t],
            enc.attention_mask[text_row_t],
            nodes[rows],
            node_mask[rows],
            None if pos is None else pos[rows],
        )
        embeddings = te.word_embeddings
        log_p = head.token_head.log_prob(
            states[masked.piece_row, masked.piece_index], embeddings, masked.targets
        )
        # the text-only prior depends on the masked text alone: once per distinct text, whose
        # pieces sit where they sit in every row of that text
        null_nodes, null_mask, null_pos = head.null_nodes(len(first), pos is not None)
        prior_states = head.token_states(
            enc.token_embeds, enc.attention_mask, null_nodes, null_mask, null_pos
        )
        first_row = torch.tensor(first_rows, dtype=torch.long, device=rows.device)
        counts = torch.bincount(masked.piece_row, minlength=len(masked))
        starts = torch.cumsum(counts, 0) - counts
        within = torch.arange(len(masked.piece_row), device=rows.device) - starts[masked.piece_row]
        # the pieces of each distinct text, taken from its first row
        own = masked.piece_row == first_row[text_row_t[masked.piece_row]]
        log_q_own = head.token_head.log_prob(
            prior_states[text_row_t[masked.piece_row[own]], masked.piece_index[own]],
            embeddings,
            masked.targets[own],
        )
        position = torch.full_like(masked.piece_row, -1)
        position[own] = torch.arange(int(own.sum()), device=rows.device)
        src = starts[first_row[text_row_t[masked.piece_row]]] + within
        log_q = log_q_own[position[src]]
        pmi_piece = log_p - log_q
        pmi = pmi_piece.new_zeros(masked.num_words).index_add(0, masked.piece_word, pmi_piece)
        word_text = torch.zeros(masked.num_words, dtype=torch.long, device=rows.device)
        word_text[masked.piece_word] = rows[masked.piece_row]
        return pmi, word_text

    #: Columns of :meth:`mlm_evidence`.
    MLM_EVIDENCE = ("pmi_mean", "pmi_sum", "pmi_min", "pmi_max", "words")

    def mlm_evidence(self, image: ImageEncoding, texts: list[str]) -> Tensor:
        """Per pair (image ``i``, text ``i``), summaries of :meth:`word_pmi` over the text's
        content words: mean, sum, min, max and the number of words (all 0 for a text with
        none; columns :attr:`MLM_EVIDENCE`).

        Shapes:
            returns ``B×5``.
        """
        pmi, word_text = self.word_pmi(image, texts)
        b = len(texts)
        out = image.image_embeds.new_zeros(b, len(self.MLM_EVIDENCE))
        if pmi.numel() == 0:
            return out
        pmi = pmi.to(out.dtype)
        count = out.new_zeros(b).index_add(0, word_text, torch.ones_like(pmi))
        total = out.new_zeros(b).index_add(0, word_text, pmi)
        inf = torch.full((b,), float("inf"), dtype=out.dtype, device=out.device)
        low = inf.scatter_reduce(0, word_text, pmi, "amin")
        high = (-inf).scatter_reduce(0, word_text, pmi, "amax")
        has = count > 0
        out[:, 0] = torch.where(has, total / count.clamp_min(1.0), 0.0)
        out[:, 1] = total
        out[:, 2] = torch.where(has, low, 0.0)
        out[:, 3] = torch.where(has, high, 0.0)
        out[:, 4] = count
        return out

    @property
    def evidence_size(self) -> int:
        """Features per pair of :meth:`match_evidence` (0 without an ITM head)."""
        if self.itm_head is None:
            return 0
        return 1 + (len(self.MLM_EVIDENCE) if self.has_token_head else 0)

    def match_evidence(self, image: ImageEncoding, text: TextEncoding, texts: list[str]) -> Tensor:
        r"""What the pretrained ITM head says about each pair (image ``i``, text ``i``), as
        input features for task heads: the ITM logit difference and, with a masked-token
        head, :meth:`mlm_evidence` (the PMI of the text's content words, in any wording).

        Why: a yes/no question or a statement such as "is the red cube left of the ball?"
        is answered by whether the image makes its words likely, which masked language
        modelling taught the cross-encoder and a task head trained from the answer alone
        does not learn.

        Shapes:
            returns ``B×evidence_size``.
        """
        score = self._itm_logit_scores(image, text)[:, None]
        if not self.has_token_head:
            return score
        return torch.cat([score, self.mlm_evidence(image, texts).to(score.dtype)], dim=1)

    def match_scores(self, graphs: Batch | Data, texts: list[str], scorer: str = "auto") -> Tensor:
        r"""Image-text score of each pair (graph ``i``, text ``i``): higher = better match.

        Args:
            graphs: ``B`` scene graphs (PyG ``Batch``; with ``pos`` when the ITM head encodes
                node positions, as every graph of the graph cache has).
            texts: ``B`` captions.
            scorer: ``"itm"`` the ITM cross-encoder's logit difference (the score that
                decides relational / attribute hard negatives, as ARO does for BLIP);
                ``"itc"`` the cosine of the image and text embeddings (the retrieval score);
                ``"auto"``: ``"itm"`` when the model has an ITM head, else ``"itc"``.

        Shapes:
            returns ``B`` (float, on the model's device). Does not change train/eval mode
            and does not disable gradients (wrap in ``torch.no_grad()`` for evaluation).
        """
        if scorer not in ("auto", "itm", "itc"):
            raise ValueError(f"scorer must be 'auto', 'itm' or 'itc', got {scorer!r}")
        if scorer == "auto":
            scorer = "itm" if self.itm_head is not None else "itc"
        image = self.encode_image(graphs)
        text = self.encode_text(list(texts))
        if scorer == "itm":
            return self.itm_scores(image, text, list(texts))
        if image.num_graphs != text.text_embeds.shape[0]:
            raise ValueError(f"{image.num_graphs} images but {len(texts)} texts")
        return (image.image_embeds * text.text_embeds).sum(-1)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (every tensor, the text transformer
        included, so the directory is self-contained) atomically into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "library": "neurogshn"})
        write_json_atomic(out / CONFIG_FILE, self.config.to_dict())
        return out

    @classmethod
    def from_pretrained(
        cls,
        directory: str | PathLike[str],
        device: str | torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> GSHN:
        """Load a model directory written by :meth:`save_pretrained` (or a training checkpoint).

        Args:
            directory: the model directory (``config.json`` + ``model.safetensors``).
            device: where to put the model (default CPU).
            overrides: ``GSHNConfig`` fields to change before loading, to continue training
                a grown model (e.g. ``{"itm_attention_sink": True}``): parameters the changed
                configuration adds keep their fresh initialisation, and a layer that gains
                output rows (a classifier that gains classes)
                keeps the file's rows first and fresh ones after them (both are logged); every
                other tensor of the file must still fit the new model.

        Raises:
            CheckpointError: missing directory/file, invalid config, a pickle (or other non-
                safetensors) weights file, a truncated or corrupt file, or weights of another
                configuration (the keys are named).
            ConfigError: ``overrides`` that name an unknown field or an invalid value.
        """
        root = Path(directory)
        cfg_path, w_path = saved_model_files(root)
        config = read_saved_config(cfg_path)
        if overrides:
            config = GSHNConfig.from_dict({**config.to_dict(), **dict(overrides)})
        state = read_safetensors(w_path)
        try:
            model = cls(config)
        except ConfigError as exc:
            raise CheckpointError(cfg_path, str(exc)) from None
        added = fit_state_to_model(state, model.state_dict(), w_path, grow=bool(overrides))
        model.load_state_dict(state, strict=not added)
        return model.to(resolve_device(device))


def _dense_inputs(image: ImageEncoding) -> tuple[Tensor, Tensor, Tensor | None]:
    """Dense nodes ``B×N×D``, node mask ``B×N`` and node centroids ``B×N×2`` (or ``None``)."""
    nodes, node_mask = image.dense_nodes()
    pos = None if image.node_pos is None else image.dense_nodes(image.node_pos)[0]
    return nodes, node_mask, pos
