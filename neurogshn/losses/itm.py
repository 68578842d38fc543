r"""Image-text matching (ITM) with hard negatives.

Head (:class:`ITMHead`): the caption's token embeddings attend to the image's node embeddings
through ``itm_layers`` pre-norm cross-attention blocks (tokens → nodes, then feed-forward); the
masked mean of the resulting token states goes through a
linear classifier with two logits (no match / match).

Pairs per batch of ``B`` images with captions (ALBEF-style mining, Li et al. 2021, plus the
data's negatives):

- ``B`` positives: image ``i`` with its caption ``i``;
- ``B`` in-batch hard negative captions: for image ``i`` a caption ``j`` sampled with probability
  :math:`\propto \exp(u_i^\top c_j / 0.05)` over captions whose text differs from caption ``i``;
- ``B`` in-batch hard negative images: for caption ``j`` an image sampled likewise;
- the data's hard negatives: image ``i`` with its caption's relation-/attribute-swapped twin.

:math:`\mathcal{L}_{ITM}` is the cross-entropy over all pairs. Sampling uses torch's global RNG
(seeded runs are deterministic). Mining similarities are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CrossAttentionBlock(nn.Module):
    r"""Pre-norm cross-attention block: :math:`h \leftarrow h + \mathrm{MHA}(\mathrm{LN}(h),
    V, V)`, then :math:`h \leftarrow h + \mathrm{FFN}(\mathrm{LN}(h))` (tokens ``h`` query the
    nodes ``V``; the text tokens are already contextualised by the text encoder, so there is no
    token self-attention here)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for m in (self.norm_q, self.norm_kv, self.norm_ff, self.ff[0], self.ff[3]):
            m.reset_parameters()
        self.attn._reset_parameters()

    def forward(self, h: Tensor, nodes: Tensor, node_mask: Tensor) -> Tensor:
        kv = self.norm_kv(nodes)
        a, _ = self.attn(self.norm_q(h), kv, kv, key_padding_mask=~node_mask, need_weights=False)
        h = h + self.dropout(a)
        return h + self.dropout(self.ff(self.norm_ff(h)))


class ITMHead(nn.Module):
    """Cross-attention matching head.

    Args:
        dim: embedding size ``D``.
        heads: attention heads.
        layers: cross-attention blocks.
        dropout: dropout.

    Shapes:
        - tokens ``P×L×D``, token_mask ``P×L`` (True = real), nodes ``P×N×D``,
          node_mask ``P×N`` → logits ``P×2``
    """

    def __init__(self, dim: int, heads: int = 4, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossAttentionBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, 2)

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()
        self.norm.reset_parameters()
        self.classifier.reset_parameters()

    def forward(
        self, tokens: Tensor, token_mask: Tensor, nodes: Tensor, node_mask: Tensor
    ) -> Tensor:
        h = tokens
        for layer in self.layers:
            h = layer(h, nodes, node_mask)
        h = self.norm(h)
        m = token_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.classifier(pooled)


def _sample_negatives(sim: Tensor, forbidden: Tensor, temperature: float = 0.05) -> Tensor:
    """For each row, a column index sampled ∝ exp(sim/τ) among allowed columns (-1: none)."""
    logits = (sim / temperature).masked_fill(forbidden, float("-inf"))
    ok = ~forbidden.all(-1)
    out = torch.full((sim.shape[0],), -1, dtype=torch.long, device=sim.device)
    if bool(ok.any()):
        probs = torch.softmax(logits[ok], dim=-1)
        out[ok] = torch.multinomial(probs, 1).squeeze(-1)
    return out


def itm_loss(
    head: ITMHead,
    nodes: Tensor,
    node_mask: Tensor,
    tokens: Tensor,
    token_mask: Tensor,
    same_caption: Tensor,
    similarity: Tensor | None = None,
    negative_tokens: Tensor | None = None,
    negative_token_mask: Tensor | None = None,
    negative_owner: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """ITM loss over positives, in-batch hard negatives and the data's hard negatives.

    Args:
        head: the ITM head.
        nodes: dense node embeddings ``B×N×D``; node_mask ``B×N``.
        tokens: caption token embeddings ``B×L×D``; token_mask ``B×L`` (attention mask).
        same_caption: ``B×B`` bool, caption ``i`` and caption ``j`` are the same text.
        similarity: ``B×B`` image-caption similarity for in-batch mining (``None``: no mining).
        negative_tokens: ``K×L'×D`` token embeddings of data hard negatives (or ``None``).
        negative_token_mask: ``K×L'``.
        negative_owner: ``K`` image index of each data hard negative.

    Returns:
        (scalar loss, accuracy of the head on these pairs).
    """
    b = nodes.shape[0]
    img_idx = [torch.arange(b, device=nodes.device)]
    txt_tok, txt_mask = [tokens], [token_mask]
    labels = [torch.ones(b, dtype=torch.long, device=nodes.device)]
    if similarity is not None and b >= 2:
        sim = similarity.detach().float()
        neg_txt = _sample_negatives(sim, same_caption)
        rows = (neg_txt >= 0).nonzero().squeeze(-1)
        img_idx.append(rows)
        txt_tok.append(tokens[neg_txt[rows]])
        txt_mask.append(token_mask[neg_txt[rows]])
        labels.append(torch.zeros(rows.numel(), dtype=torch.long, device=nodes.device))
        neg_img = _sample_negatives(sim.T, same_caption.T)
        cols = (neg_img >= 0).nonzero().squeeze(-1)
        img_idx.append(neg_img[cols])
        txt_tok.append(tokens[cols])
        txt_mask.append(token_mask[cols])
        labels.append(torch.zeros(cols.numel(), dtype=torch.long, device=nodes.device))
    if negative_tokens is not None and negative_tokens.shape[0]:
        length = tokens.shape[1]
        nl = negative_tokens.shape[1]
        if nl < length:
            negative_tokens = F.pad(negative_tokens, (0, 0, 0, length - nl))
            negative_token_mask = F.pad(negative_token_mask, (0, length - nl), value=False)
        elif nl > length:
            txt_tok = [F.pad(t, (0, 0, 0, nl - length)) for t in txt_tok]
            txt_mask = [F.pad(m, (0, nl - length), value=False) for m in txt_mask]
        img_idx.append(negative_owner)
        txt_tok.append(negative_tokens)
        txt_mask.append(negative_token_mask)
        labels.append(torch.zeros(negative_owner.numel(), dtype=torch.long, device=nodes.device))
    idx = torch.cat(img_idx)
    logits = head(torch.cat(txt_tok), torch.cat(txt_mask), nodes[idx], node_mask[idx])
    target = torch.cat(labels)
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(-1) == target).float().mean().detach()
    return loss, acc
