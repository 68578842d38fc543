r"""Task heads on top of a GSHN: VQA, visual entailment (VE) and NLVR2.

All three share one cross-modal encoder. Relations ("is the red circle left of the square?")
need node-level information, so the text's tokens attend to the image's node embeddings.
``fusion="cross"`` (the default, and what ``task.json`` files without a ``fusion`` key hold)
is post-norm blocks without self-attention or positions,

.. math::
    H = \mathrm{LN}\bigl(Q + \mathrm{MHA}(Q W_q, V W_k, V W_v)\bigr), \qquad
    H' = \mathrm{LN}(H + \mathrm{FFN}(H)),

which cannot compare what two tokens fetched nor tell "A left of B" from "B left of A".
``fusion="blip"`` is the ITM head's encoder
(:class:`~neurogshn.model.crossmodal.CrossModalEncoder`): learned token-index embeddings on
the tokens (word order), Fourier encodings of the node centroids on the nodes (where each
segment is), and ``layers`` pre-norm blocks of token self-attention, cross-attention to the
nodes and feed-forward, then a LayerNorm; with ``init="itm"`` it starts as a copy of the
pretrained ITM head.

Here ``Q`` are the text token features (``B×L×D``) and ``V`` the node embeddings of the same
image, padded per image (``B×N_max×D``, padding masked out). Mean-pooling the final token
states over the real tokens gives the question-in-context vector ``q``. The fused feature of
one image and one text is

.. math:: f = [\,v;\ t;\ q;\ v \odot t;\ \phi(c);\ e\,]

(``v`` the image embedding, ``t`` the sentence embedding). Two optional parts reuse what the
model knows:

- ``c`` (``count_heads`` > 0): soft counts
  :math:`c_k = \sum_n \sigma(\langle W_k q, x_n\rangle/\sqrt{D})` over the nodes, spread over
  integer bins by :func:`count_bins` (``φ``). Softmax attention is normalised over the nodes
  and cannot say how many segments a phrase names; these gates are not.
- ``e`` (``evidence_dim`` > 0): the backbone's ITM evidence for the pair
  (:meth:`~neurogshn.model.gshn.GSHN.match_evidence`: the match score and the pointwise
  mutual information of the text's content words under image-conditioned masked language
  modelling). Pretraining taught the cross-encoder whether the image makes each word of a
  text likely, in any wording; a head trained on answers alone does not learn that (VQA
  relation questions at chance, docs/results.md).

VQA and VE classify ``f`` with an MLP over the answer / label vocabulary; NLVR2 concatenates
``f`` of the left and right image with the same statement and classifies into {False, True}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.model.crossmodal import CrossModalEncoder

TASKS: tuple[str, ...] = ("vqa", "ve", "nlvr2")
FUSIONS: tuple[str, ...] = ("blip", "cross")
#: where the fusion encoder's weights start: ``random`` or the backbone's pretrained ITM head
INITS: tuple[str, ...] = ("random", "itm")


@dataclass
class TaskHeadConfig:
    """Configuration of a task head (saved as ``task.json`` beside the backbone).

    Args:
        task: ``vqa``, ``ve`` or ``nlvr2``.
        labels: the class vocabulary (answers for VQA, labels for VE, ``["False", "True"]``
            for NLVR2); the head has ``len(labels)`` outputs.
        embed_dim: the backbone's embedding size ``D``.
        heads: attention heads of the cross-attention blocks.
        layers: cross-attention blocks.
        hidden: hidden size of the classifier MLP.
        dropout: dropout in attention and MLP.
        token_dim: size of the text encoder's token features when it differs from
            ``embed_dim`` (a linear projection maps them to ``embed_dim``); ``None``: equal.
        fusion: ``"blip"`` (token and node positions, self- and cross-attention) or
            ``"cross"`` (the earlier cross-attention-only head; see the module docstring).
        max_tokens: token positions of the ``"blip"`` encoder (at least the backbone's
            ``text_max_length``).
        init: ``"random"`` or ``"itm"``: the ``"blip"`` encoder starts as a copy of the
            backbone's pretrained ITM head (its blocks, positions and final LayerNorm; sizes
            taken from that head), as BLIP/ALBEF start their VQA encoder from the ITM-trained
            one. Only the construction differs: a saved head loads its own weights.
        evidence_dim: features per image slot from the backbone's pretrained ITM head
            (:meth:`~neurogshn.model.gshn.GSHN.match_evidence`: match score and word
            PMI summaries), appended to the fused feature; ``0``: none.
        count_heads: soft-count readouts appended to the fused feature (module docstring);
            ``0``: none.
    """

    task: str
    labels: list[str] = field(default_factory=list)
    embed_dim: int = 256
    heads: int = 4
    layers: int = 1
    hidden: int = 512
    dropout: float = 0.1
    token_dim: int | None = None
    fusion: str = "cross"
    max_tokens: int = 64
    init: str = "random"
    evidence_dim: int = 0
    count_heads: int = 0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r} (known: {', '.join(FUSIONS)})")
        if self.init not in INITS:
            raise ValueError(f"unknown head init {self.init!r} (known: {', '.join(INITS)})")
        if self.init == "itm" and self.fusion != "blip":
            raise ValueError(
                f"head init 'itm' copies the ITM head into a 'blip' fusion encoder, not into "
                f"{self.fusion!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (known: {', '.join(TASKS)})")
        if len(self.labels) < 2:
            raise ValueError(f"task {self.task}: needs at least 2 labels, got {self.labels}")
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.evidence_dim < 0 or self.count_heads < 0:
            raise ValueError(
                f"evidence_dim and count_heads must be >= 0, got {self.evidence_dim}, "
                f"{self.count_heads}"
            )

    @property
    def num_images(self) -> int:
        """Images per example (2 for NLVR2)."""
        return 2 if self.task == "nlvr2" else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskHeadConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown task-head config key(s): {', '.join(unknown)}")
        data = dict(data)
        # task.json written before the fusion choice existed: the head it was trained with
        data.setdefault("fusion", "cross")
        return cls(**data)


#: soft counts are spread over the bins 0 … COUNT_BINS (the last one takes every larger count)
COUNT_BINS = 10


def count_bins(counts: Tensor, bins: int = COUNT_BINS) -> Tensor:
    r"""Triangular binning of real-valued counts: :math:`\phi_j(c) = \max(0, 1 - |c' - j|)`
    for ``j = 0 … bins`` with :math:`c' = \min(c, \text{bins})`; an integer count is a one-hot
    vector, a count between two integers splits its unit mass between them.

    Why: a classifier on the raw count has to carve integer thresholds out of one input; on
    the bins "how many …? → 3" is linear.

    Shapes:
        ``…`` → ``…×(bins+1)``.
    """
    grid = torch.arange(bins + 1, device=counts.device, dtype=counts.dtype)
    c = counts.clamp(0, bins).unsqueeze(-1)
    return (1 - (c - grid).abs()).clamp_min(0)


class CrossAttentionBlock(nn.Module):
    """Text tokens attend to node embeddings (post-norm transformer decoder block without
    self-attention).

    Shapes:
        tokens ``B×L×D``, nodes ``B×N×D``, node_mask ``B×N`` (True = real node) → ``B×L×D``.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, nodes: Tensor, node_mask: Tensor) -> Tensor:
        attended, _ = self.attn(tokens, nodes, nodes, key_padding_mask=~node_mask)
        h = self.norm1(tokens + attended)
        return self.norm2(h + self.ffn(h))

    def reset_parameters(self) -> None:
        self.attn._reset_parameters()
        for m in (self.norm1, self.norm2, self.ffn[0], self.ffn[3]):
            m.reset_parameters()


class CrossModalFusion(nn.Module):
    r"""Fused image-text feature :math:`f = [v; t; q; v\odot t]` (``B×4D``).

    Args:
        dim: embedding size ``D``.
        heads: attention heads.
        layers: blocks.
        dropout: dropout.
        fusion: ``"blip"`` or ``"cross"`` (module docstring).
        max_tokens: token positions (``"blip"``).
        count_heads: soft-count readouts ``c`` appended to ``f`` (module docstring).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        fusion: str = "cross",
        max_tokens: int = 64,
        count_heads: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.fusion = fusion
        self.count_heads = count_heads
        self.count_query = nn.Linear(dim, count_heads * dim) if count_heads > 0 else None
        if fusion == "blip":
            self.encoder = CrossModalEncoder(
                dim,
                heads,
                layers,
                dropout,
                node_position=True,
                self_attention=True,
                token_position=True,
                max_tokens=max_tokens,
            )
            self.norm = nn.LayerNorm(dim)
        else:
            self.blocks = nn.ModuleList(
                CrossAttentionBlock(dim, heads, dropout) for _ in range(layers)
            )

    @property
    def out_dim(self) -> int:
        return 4 * self.dim + self.count_heads * (COUNT_BINS + 1)

    def forward(
        self,
        image_embeds: Tensor,
        node_embeds: Tensor,
        node_batch: Tensor,
        text_embeds: Tensor,
        token_embeds: Tensor,
        attention_mask: Tensor,
        node_pos: Tensor | None = None,
    ) -> Tensor:
        """Args:
            image_embeds: ``B×D``; node_embeds: ``N×D`` with ``node_batch`` (``N``, values in
            ``[0, B)``); text_embeds: ``B×D``; token_embeds: ``B×L×D``; attention_mask:
            ``B×L`` (1 = real token); node_pos: ``N×2`` node centroids (needed by ``"blip"``).

        Returns:
            ``B×(4D + count_heads·(COUNT_BINS+1))``.
        """
        from torch_geometric.utils import to_dense_batch

        b = image_embeds.size(0)
        nodes, node_mask = to_dense_batch(node_embeds, node_batch, batch_size=b)
        if self.fusion == "blip":
            if node_pos is None:
                raise ValueError(
                    "the task head (fusion 'blip') needs the node centroids (graphs' `pos`)"
                )
            pos, _ = to_dense_batch(node_pos.to(nodes.dtype), node_batch, batch_size=b)
            h, _ = self.encoder(token_embeds, attention_mask.bool(), nodes, node_mask, pos)
            h = self.norm(h)
        else:
            h = token_embeds
            for block in self.blocks:
                h = block(h, nodes, node_mask)
        m = attention_mask.to(h.dtype).unsqueeze(-1)
        q = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        fused = [image_embeds, text_embeds, q, image_embeds * text_embeds]
        if self.count_query is not None:
            fused.append(count_bins(self.soft_counts(q, nodes, node_mask)).flatten(1))
        return torch.cat(fused, dim=-1)

    def soft_counts(self, q: Tensor, nodes: Tensor, node_mask: Tensor) -> Tensor:
        r"""Soft counts :math:`c_k = \sum_n \sigma(\langle W_k q, x_n\rangle / \sqrt{D})`
        over the real nodes ``x_n`` of each image, one per readout ``k``.

        Why: softmax attention (and the mean pooling after it) is normalised over the nodes,
        so the fused feature cannot say whether a question's phrase names one segment or
        four; sigmoid gates are not normalised and their sum grows with the number of
        matching segments (the unnormalised-attention counting of Trott et al., ICLR 2018).

        Shapes:
            q ``B×D``, nodes ``B×N×D``, node_mask ``B×N`` → ``B×count_heads``.
        """
        assert self.count_query is not None
        keys = self.count_query(q).view(q.shape[0], self.count_heads, self.dim)
        logits = torch.einsum("bkd,bnd->bkn", keys, nodes) / self.dim**0.5
        gates = torch.sigmoid(logits) * node_mask[:, None, :].to(logits.dtype)
        return gates.sum(-1)

    def copy_itm_head(self, itm_head: nn.Module) -> None:
        """Start the ``"blip"`` encoder and its final LayerNorm as a copy of a pretrained
        :class:`~neurogshn.model.itm.ITMHead` (same sizes; its classifiers are not used).

        Raises:
            ValueError: not a ``"blip"`` fusion, or the ITM head's blocks or positions differ
                from this encoder's (the parameters that do not match are named).
        """
        if self.fusion != "blip":
            raise ValueError(f"only a 'blip' fusion can copy the ITM head, not {self.fusion!r}")
        own = self.encoder.state_dict()
        theirs = {k: v for k, v in itm_head.state_dict().items() if k in own}
        missing = sorted(set(own) - set(theirs))
        bad_shape = sorted(k for k in theirs if theirs[k].shape != own[k].shape)
        if missing or bad_shape:
            raise ValueError(
                "the backbone's ITM head does not have this fusion encoder's shape (missing "
                f"{missing[:3]}, wrong shape {bad_shape[:3]}); it needs node positions, token "
                "self-attention and token positions (itm_node_position, itm_self_attention, "
                "itm_token_position)"
            )
        self.encoder.load_state_dict(theirs)
        self.norm.load_state_dict(itm_head.norm.state_dict())

    def reset_parameters(self) -> None:
        if self.fusion == "blip":
            self.encoder.reset_parameters()
            self.norm.reset_parameters()
        else:
            for b in self.blocks:
                b.reset_parameters()
        if self.count_query is not None:
            self.count_query.reset_parameters()


class TaskHead(nn.Module):
    """Cross-modal fusion plus an MLP classifier over ``config.labels``.

    Shapes:
        ``forward(image_encodings, text_encoding)`` with one ``ImageEncoding`` per image slot
        (1 for VQA/VE, 2 for NLVR2), each for a batch of ``B`` graphs, and one
        ``TextEncoding`` for ``B`` texts → logits ``B×len(labels)``.
    """

    def __init__(self, config: TaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.fusion = CrossModalFusion(
            d,
            config.heads,
            config.layers,
            config.dropout,
            config.fusion,
            config.max_tokens,
            config.count_heads,
        )
        self.token_proj = (
            nn.Linear(config.token_dim, d)
            if config.token_dim is not None and config.token_dim != d
            else nn.Identity()
        )
        self.classifier = nn.Sequential(
            nn.Linear(
                (self.fusion.out_dim + config.evidence_dim) * config.num_images, config.hidden
            ),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.labels)),
        )

    def forward(
        self,
        image_encodings: list[Any],
        text_encoding: Any,
        evidence: list[Tensor] | None = None,
    ) -> Tensor:
        """``evidence``: per image slot the ``B×evidence_dim`` ITM evidence (needed when
        ``config.evidence_dim > 0``)."""
        if len(image_encodings) != self.config.num_images:
            raise ValueError(
                f"task {self.config.task} needs {self.config.num_images} image(s) per example, "
                f"got {len(image_encodings)}"
            )
        if self.config.evidence_dim > 0:
            if evidence is None or len(evidence) != len(image_encodings):
                raise ValueError(
                    f"this head reads {self.config.evidence_dim} ITM evidence features per "
                    "image (evidence_dim); pass one B×evidence_dim tensor per image"
                )
            bad = [tuple(e.shape) for e in evidence if e.shape[-1] != self.config.evidence_dim]
            if bad:
                raise ValueError(
                    f"ITM evidence has {bad[0][-1]} features, this head expects "
                    f"{self.config.evidence_dim} (was it trained on another backbone?)"
                )
        feats = [
            self.fusion(
                enc.image_embeds,
                enc.node_embeds,
                enc.node_batch,
                text_encoding.text_embeds,
                self.token_proj(text_encoding.token_embeds),
                text_encoding.attention_mask,
                getattr(enc, "node_pos", None),
            )
            for enc in image_encodings
        ]
        if self.config.evidence_dim > 0:
            assert evidence is not None
            feats = [torch.cat([f, e.to(f.dtype)], dim=-1) for f, e in zip(feats, evidence)]
        return self.classifier(torch.cat(feats, dim=-1))

    def reset_parameters(self) -> None:
        self.fusion.reset_parameters()
        if isinstance(self.token_proj, nn.Linear):
            self.token_proj.reset_parameters()
        for m in (self.classifier[0], self.classifier[3]):
            m.reset_parameters()


class TaskModel(nn.Module):
    """A GSHN backbone plus a :class:`TaskHead`.

    Args:
        backbone: a GSHN (``encode_image`` / ``encode_text``).
        head: the task head (its ``embed_dim`` must be the backbone's).
    """

    def __init__(self, backbone: nn.Module, head: TaskHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def config(self) -> TaskHeadConfig:
        return self.head.config

    def forward(self, graph_batches: list[Any], texts: list[str]) -> Tensor:
        """Logits ``B×C`` for ``B`` examples: ``graph_batches`` holds one PyG ``Batch`` of
        ``B`` graphs per image slot, ``texts`` the ``B`` questions / statements."""
        images = [self.backbone.encode_image(b) for b in graph_batches]
        text = self.backbone.encode_text(list(texts))
        evidence = None
        if self.config.evidence_dim > 0:
            evidence = [self.backbone.match_evidence(im, text, list(texts)) for im in images]
        return self.head(images, text, evidence)
