r"""Task heads on top of a GSHN: VQA, visual entailment (VE) and NLVR2.

All three share one cross-modal encoder. Relations ("is the red circle left of the square?")
need node-level information, so the text's tokens attend to the image's node embeddings.
``fusion="blip"`` (default) is the ITM head's encoder
(:class:`~neurogshn.model.crossmodal.CrossModalEncoder`): learned token-index embeddings on
the tokens (word order), Fourier encodings of the node centroids on the nodes (where each
segment is), and ``layers`` pre-norm blocks of token self-attention, cross-attention to the
nodes and feed-forward, then a LayerNorm. ``fusion="cross"`` is the earlier head (and what
``task.json`` files without a ``fusion`` key hold): post-norm blocks without self-attention or
positions,

.. math::
    H = \mathrm{LN}\bigl(Q + \mathrm{MHA}(Q W_q, V W_k, V W_v)\bigr), \qquad
    H' = \mathrm{LN}(H + \mathrm{FFN}(H)),

which cannot compare what two tokens fetched nor tell "A left of B" from "B left of A".
Here ``Q`` are the text token features (``B×L×D``) and ``V`` the node embeddings of the same
image, padded per image (``B×N_max×D``, padding masked out). Mean-pooling the final token
states over the real tokens gives the question-in-context vector ``q``. The fused feature of
one image and one text is

.. math:: f = [\,v;\ t;\ q;\ v \odot t\,] \in \mathbb{R}^{4D}

(``v`` the image embedding, ``t`` the sentence embedding). VQA and VE classify ``f`` with an
MLP over the answer / label vocabulary; NLVR2 concatenates ``f`` of the left and right image
with the same statement (``8D``) and classifies into {False, True}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.model.crossmodal import CrossModalEncoder

TASKS: tuple[str, ...] = ("vqa", "ve", "nlvr2")
FUSIONS: tuple[str, ...] = ("blip", "cross")


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

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r} (known: {', '.join(FUSIONS)})")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (known: {', '.join(TASKS)})")
        if len(self.labels) < 2:
            raise ValueError(f"task {self.task}: needs at least 2 labels, got {self.labels}")
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by heads {self.heads}")

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
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        fusion: str = "cross",
        max_tokens: int = 64,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.fusion = fusion
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
        return 4 * self.dim

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
            ``B×4D``.
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
        return torch.cat([image_embeds, text_embeds, q, image_embeds * text_embeds], dim=-1)

    def reset_parameters(self) -> None:
        if self.fusion == "blip":
            self.encoder.reset_parameters()
            self.norm.reset_parameters()
        else:
            for b in self.blocks:
                b.reset_parameters()


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
            d, config.heads, config.layers, config.dropout, config.fusion, config.max_tokens
        )
        self.token_proj = (
            nn.Linear(config.token_dim, d)
            if config.token_dim is not None and config.token_dim != d
            else nn.Identity()
        )
        self.classifier = nn.Sequential(
            nn.Linear(4 * d * config.num_images, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.labels)),
        )

    def forward(self, image_encodings: list[Any], text_encoding: Any) -> Tensor:
        if len(image_encodings) != self.config.num_images:
            raise ValueError(
                f"task {self.config.task} needs {self.config.num_images} image(s) per example, "
                f"got {len(image_encodings)}"
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
        return self.head(images, text)
