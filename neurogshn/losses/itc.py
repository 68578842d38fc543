r"""Image-text contrastive loss (ITC): symmetric InfoNCE with a learned temperature and
optional hard-negative captions (NegCLIP, Yuksekgonul et al., ICLR 2023).

With L2-normalised image embeddings :math:`u_i`, caption embeddings :math:`c_j` (``B`` of each,
caption ``i`` belongs to image ``i``), ``K`` extra hard-negative captions :math:`c_{B+k}` and the
inverse temperature :math:`s = \min(e^{\theta}, s_{max})`:

.. math::
    \mathcal{L}_{ITC} = \tfrac12\Big[
      -\tfrac1B\sum_i \log \sum_{j \in P_i} \operatorname{softmax}_j(s\,u_i^\top c_j)
      -\tfrac1B\sum_j \log \sum_{i \in Q_j} \operatorname{softmax}_i(s\,c_j^\top u_i)\Big]

Positives: :math:`P_i` is the set of columns whose text equals image ``i``'s caption (normally
just ``{i}``, then this is the plain InfoNCE; identical captions of different images are pooled
as positives instead of being treated as negatives), :math:`Q_j` likewise for texts.
The hard negatives (the caption with its relation or attributes swapped) only enter the
image→text direction, as extra candidates every image must rank below its own caption — this is
what forces the text tower to encode word order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Multi-positive cross-entropy: mean over rows of ``-log Σ_{j∈P_i} softmax(logits)_ij``.

    With one positive per row this is the ordinary cross-entropy; with several (identical
    captions of different images) their probabilities are pooled, so duplicates are neither
    negatives of each other nor forced apart. Rows without any positive are ignored.
    """
    targets = targets.to(torch.bool)
    valid = targets.any(-1)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logp = F.log_softmax(logits[valid], dim=-1)
    pos = logp.masked_fill(~targets[valid], float("-inf"))
    return -torch.logsumexp(pos, dim=-1).mean()


def same_text_mask(rows: list[str], cols: list[str], device: torch.device | None = None) -> Tensor:
    """``len(rows)×len(cols)`` bool: ``rows[i] == cols[j]``."""
    index: dict[str, int] = {}
    r = torch.tensor([index.setdefault(t, len(index)) for t in rows], device=device)
    c = torch.tensor([index.setdefault(t, len(index)) for t in cols], device=device)
    return r[:, None] == c[None, :]


def itc_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    scale: Tensor,
    hard_negative_embeds: Tensor | None = None,
    targets: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE between images and captions (NegCLIP hard negatives optional).

    Args:
        image_embeds: ``B×D`` normalised image embeddings.
        text_embeds: ``B×D`` normalised caption embeddings (caption ``i`` of image ``i``).
        scale: inverse temperature (scalar tensor).
        hard_negative_embeds: ``K×D`` normalised hard-negative caption embeddings, or ``None``.
        targets: ``B×(B+K)`` bool positives (default: the identity on the first ``B`` columns).

    Returns:
        scalar loss.
    """
    b = image_embeds.shape[0]
    candidates = text_embeds
    if hard_negative_embeds is not None and hard_negative_embeds.shape[0]:
        candidates = torch.cat([text_embeds, hard_negative_embeds], dim=0)
    if targets is None:
        targets = torch.zeros(b, candidates.shape[0], dtype=torch.bool, device=image_embeds.device)
        targets[:, :b] = torch.eye(b, dtype=torch.bool, device=image_embeds.device)
    i2t = scale * image_embeds @ candidates.T
    t2i = scale * text_embeds @ image_embeds.T
    return 0.5 * (soft_cross_entropy(i2t, targets) + soft_cross_entropy(t2i, targets[:, :b].T))
