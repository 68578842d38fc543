r"""Evidence for a caption's spatial relations: where the things named before and after each
word lie, read against what the word means.

A caption states a relation by word order: "the red circle *sits further left than* the blue
square". For each token :math:`t` the score compares the referent named just before it with
the one named just after it, and lets the token's own meaning decide which displacement agrees
with it:

.. math::
    s = \sum_t q_t\, c_t\, (U x_t)^\top \Delta_t, \qquad
    \Delta_t = \frac{\sum_{s>t} a_{ts}\, g_s}{\sum_{s>t} a_{ts}}
             - \frac{\sum_{s<t} a_{ts}\, g_s}{\sum_{s<t} a_{ts}}, \qquad
    a_{ts} = r_s\, m_s\, e^{-(|t-s| - 1)/\tau}

- :math:`x_t` is the text model's *frozen* state of token :math:`t` (the memoised lower
  layers, :class:`~neurogshn.model.text.TextEncoder`): it keeps the pretrained model's sense
  of words, so that a relation worded in training ("below") transfers to words the captions
  never used ("beneath"): a linear read-out of these states learnt on the training wording
  labels the held-out wording's relation phrases correctly (docs/results.md);
- :math:`g_s` and :math:`m_s` are the centroid and the mass of the nodes that token :math:`s`
  attends to in the cross-encoder's first block (the block that phrase grounding supervises;
  :func:`~neurogshn.model.positions.grounded_centroids`);
- :math:`r_s = \sigma(w_r^\top x_s + b_r)` is a *referent gate*: whether token :math:`s`
  names something (trained from the data set's phrase groundings,
  :func:`~neurogshn.losses.grounding.referent_loss`), so that the relation words' own
  attention does not count as a referent;
- :math:`\tau` (``window``, in tokens) makes the nearest referent on each side dominate, so in
  "A is left of B, and C is above D" the word "above" compares C with D;
- :math:`c_t = \min(1, \sum_{s<t} a_{ts}, \sum_{s>t} a_{ts})`: a word with no referent on one
  side contributes nothing; :math:`q_t` masks padding; :math:`U` maps a word state to a
  direction in the image plane (zero-initialised: a new head scores exactly like one without
  this term).

Why a separate term: whether a caption matches its relation-swapped twin's image is an
exclusive-or of the relation word and the two referents' order, which the ITM head's pooled
classifier does not learn from a single match bit (docs/results.md, "comparing two
referents"); here the gradient with respect to :math:`U` is :math:`x_t \Delta_t^\top` from the
first step, whatever the words are. Nothing here knows a relation word: which words carry a
direction, and which one, is learnt from captions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurogshn.model.positions import grounded_centroids


class GroundedRelationScore(nn.Module):
    """The relation term of the ITM match score (module docstring).

    Args:
        word_dim: the text model's width ``H`` (its frozen token states).
        window: :math:`\\tau`, in tokens.

    Shapes:
        - word_states ``P×L×H``, token_mask ``P×L`` (True = real token), attention ``P×L×N``
          (the first block's cross-attention over the real nodes), node_pos ``P×N×2`` → ``P``
    """

    def __init__(self, word_dim: int, window: float = 2.0) -> None:
        super().__init__()
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window = float(window)
        self.direction = nn.Linear(word_dim, 2, bias=False)
        self.referent = nn.Linear(word_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.direction.weight)
        nn.init.normal_(self.referent.weight, std=0.02)
        nn.init.zeros_(self.referent.bias)

    def referent_logits(self, word_states: Tensor) -> Tensor:
        """Logits of the referent gate :math:`r` per token (``P×L×H`` → ``P×L``)."""
        return self.referent(word_states).squeeze(-1)

    def displacements(
        self, word_states: Tensor, token_mask: Tensor, attention: Tensor, node_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per token, :math:`\\Delta_t` (``P×L×2``) and its confidence :math:`c_t` (``P×L``)."""
        dtype = attention.dtype
        centroids, mass = grounded_centroids(attention, node_pos)
        gate = torch.sigmoid(self.referent_logits(word_states.to(dtype)))
        weight = gate * mass * token_mask.to(dtype)  # P×L
        length = weight.shape[-1]
        index = torch.arange(length, device=weight.device)
        offset = index[None, :] - index[:, None]  # s - t
        decay = torch.exp(-(offset.abs() - 1).clamp_min(0).to(dtype) / self.window)
        sides = []
        for side in (offset < 0, offset > 0):  # before t, after t
            a = weight[:, None, :] * (decay * side.to(dtype))[None]  # P×L×L
            total = a.sum(-1)
            where = (a @ centroids) / total.clamp_min(1e-6).unsqueeze(-1)
            sides.append((where, total))
        (before, w_before), (after, w_after) = sides
        confidence = torch.minimum(w_before, w_after).clamp(max=1.0) * token_mask.to(dtype)
        return after - before, confidence

    def forward(
        self, word_states: Tensor, token_mask: Tensor, attention: Tensor, node_pos: Tensor
    ) -> Tensor:
        delta, confidence = self.displacements(word_states, token_mask, attention, node_pos)
        direction = self.direction(word_states.to(delta.dtype))  # P×L×2
        return (confidence * (direction * delta).sum(-1)).sum(-1)

    def extra_repr(self) -> str:
        return f"window={self.window}"
