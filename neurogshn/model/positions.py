r"""Where things are, for the cross-encoder: node centroids, token indices and offsets, and the
grounded positions of the tokens' referents (:mod:`neurogshn.model.crossmodal` uses them).

- :class:`NodePositionEncoding`: a learned projection of Fourier features of node centroids,
  added to the nodes the tokens attend to;
- :class:`TokenPositionEmbedding`: a learned embedding of each token's index (BERT-style);
- :class:`RelativePositionBias`: a learned self-attention bias by token offset (T5-style);
- :class:`GroundedGeometry` with :func:`grounded_centroids`: where the nodes each token reads
  lie, passed to the other tokens by word offset.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def fourier_features(pos: Tensor, freqs: Tensor) -> Tensor:
    r""":math:`\phi(p) = [p, \sin(f_k p), \cos(f_k p)]_k` of positions ``*×2`` → ``*×(2 + 4K)``."""
    angles = (pos.unsqueeze(-1) * freqs.to(pos.dtype)).flatten(-2)
    return torch.cat([pos, angles.sin(), angles.cos()], dim=-1)


class NodePositionEncoding(nn.Module):
    r"""Learned projection of Fourier features of node centroids,
    :math:`W_p\,[p, \sin(2^k\pi p), \cos(2^k\pi p)]_{k=0}^{K-1}`.

    Args:
        dim: output size ``D``.
        frequencies: number of octaves ``K``.

    Shapes:
        - pos ``*×2`` (centroids in [0, 1]) → ``*×D``
    """

    def __init__(self, dim: int, frequencies: int = 4) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), False
        )
        self.proj = nn.Linear(2 + 4 * frequencies, dim)

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()

    def forward(self, pos: Tensor) -> Tensor:
        return self.proj(fourier_features(pos.to(self.proj.weight.dtype), self.freqs))


class TokenPositionEmbedding(nn.Module):
    r"""Learned absolute position embedding :math:`P_t` of token index ``t`` (BERT-style).

    Args:
        dim: embedding size ``D``.
        max_positions: most token positions (the tokenizer's truncation length or more).

    Shapes:
        - length ``L`` → ``L×D`` (``L ≤ max_positions``)
    """

    def __init__(self, dim: int, max_positions: int = 64) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, length: int) -> Tensor:
        if length > self.weight.shape[0]:
            raise ValueError(
                f"{length} tokens but the position embedding has {self.weight.shape[0]} "
                "positions (config text_max_length)"
            )
        return self.weight[:length]


class RelativePositionBias(nn.Module):
    r"""Learned bias of the token self-attention logits by the clipped offset between key and
    query, one value per head: :math:`b_h(\operatorname{clip}(s - t, -K, K))` (Shaw et al.
    2018; T5's bias without buckets).

    Why: the tokens that a word has to read sit at fixed *offsets* from it whatever the
    caption's length ("the word before me", "the noun two words on"), which an absolute
    token-index embedding can express only position by position. Starts at zero (no effect).

    Args:
        heads: attention heads ``H``.
        max_distance: ``K``, offsets beyond it share the bias of ``±K``.

    Shapes:
        - length ``L`` → ``H×L×L``
    """

    def __init__(self, heads: int, max_distance: int) -> None:
        super().__init__()
        self.max_distance = int(max_distance)
        self.weight = nn.Parameter(torch.zeros(heads, 2 * self.max_distance + 1))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, length: int) -> Tensor:
        index = torch.arange(length, device=self.weight.device)
        offset = (index[None, :] - index[:, None]).clamp(-self.max_distance, self.max_distance)
        return self.weight[:, offset + self.max_distance]


class GroundedGeometry(nn.Module):
    r"""Where the other words' referents are, by word order: each token :math:`t` receives

    .. math::
        r_t = \sum_s \alpha_{ts}\, U_{b(s-t)}\, m_s\, \phi(g_s),\qquad
        g_s = \frac{\sum_n A_{sn}\, p_n}{m_s},\quad m_s = \sum_n A_{sn}

    with :math:`A` the previous block's cross-attention of token :math:`s` to the nodes (its
    share on the null node left out), :math:`p_n` the node centroids, so :math:`g_s` is where
    the nodes that token :math:`s` reads lie and :math:`m_s` how much it reads nodes at all;
    :math:`\alpha` the block's token self-attention (mean over heads), :math:`\phi` Fourier
    features, and :math:`U_b` one learned matrix per clipped offset
    :math:`b = \operatorname{clip}(s - t, -K, K)`.

    Why: deciding "the A is left of the B" needs the difference of two referents' positions,
    read at a third word. Through plain attention the word gets an *average* of what the
    others fetched, symmetric in the two, so neither the readout nor the attention gets a
    gradient until both exist (measured on a synthetic two-object task: the masked relation
    stays at chance for 900 steps, docs/results.md). With a matrix per offset the referents
    before and after a word enter with different signs from the first step, whatever the
    words are: nothing here knows a relation word.

    Args:
        dim: output size ``D``.
        max_offset: ``K``.
        frequencies: octaves of :math:`\phi`.

    Shapes:
        - attention ``P×L×L`` (rows: query tokens), centroids ``P×L×2``, mass ``P×L``
          → ``P×L×D``
    """

    def __init__(self, dim: int, max_offset: int, frequencies: int = 4) -> None:
        super().__init__()
        self.max_offset = int(max_offset)
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), False
        )
        self.weight = nn.Parameter(torch.empty(2 * self.max_offset + 1, 2 + 4 * frequencies, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, attention: Tensor, centroids: Tensor, mass: Tensor) -> Tensor:
        length = attention.shape[-1]
        index = torch.arange(length, device=attention.device)
        offset = (index[None, :] - index[:, None]).clamp(-self.max_offset, self.max_offset)
        onehot = nn.functional.one_hot(offset + self.max_offset, self.weight.shape[0])
        feats = fourier_features(centroids, self.freqs) * mass.unsqueeze(-1)  # P×L×F
        per_offset = torch.einsum(
            "pts,tsb,psf->ptbf", attention, onehot.to(attention.dtype), feats.to(attention.dtype)
        )
        return torch.einsum("ptbf,bfd->ptd", per_offset, self.weight.to(attention.dtype))


def grounded_centroids(attention: Tensor, node_pos: Tensor) -> tuple[Tensor, Tensor]:
    """Per token, the centroid of the nodes it attends to and its attention mass on them.

    Shapes:
        attention ``P×L×N`` (rows sum to at most 1), node_pos ``P×N×2`` → ``P×L×2``, ``P×L``
    """
    mass = attention.sum(-1)
    centroids = (attention @ node_pos.to(attention.dtype)) / mass.clamp_min(1e-6).unsqueeze(-1)
    return centroids, mass
