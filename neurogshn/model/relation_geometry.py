r"""Relation geometry: two pointers from a masked relation to the nodes it relates, and a
classifier on the displacement between their centroids.

For the final state :math:`h` of a caption's mask token (the masked relation, after the ITM
head's fusion blocks) and the position-carrying nodes :math:`\tilde V_n` with centroids
:math:`p_n \in [0, 1]^2`:

.. math::
    a^{s}_n = \operatorname{softmax}_n \frac{(W_s h)^\top W_k \mathrm{LN}(\tilde V_n)}{\sqrt D},
    \qquad a^{o}_n \text{ likewise with } W_o,

    \delta = \sum_n (a^{s}_n - a^{o}_n)\, p_n, \qquad
    g = \lambda\,[\delta_x, \delta_y, |\delta_x|, |\delta_y|, |\delta_x| - |\delta_y|],

    \ell = W_2\,\mathrm{ReLU}(W_1 g + b_1) + b_2

:math:`\ell` is added to the relation classifier's logits (:class:`~neurogshn.losses.itm.ITMHead`,
``itm_relation_geometry``); :math:`W_2, b_2` start at zero, so a trained head grown with it
scores as before until it learns.

Why: a relation of the benchmark is a function of the displacement between two centroids (the
dominant axis and its sign; none when neither axis dominates). The fusion blocks see positions
only as Fourier features mixed into ``D`` dimensions, and near the boundary that was not
enough: 1.5 % of the first text → image candidates were false by a relation, nearly all of
them diagonal pairs a few degrees from it, and the *no relation* class reached about 30 %
training accuracy on such pairs (docs/results.md, session 16). The pointers make the
comparison an explicit subtraction of two centroids. They are supervised by the captions'
phrase groundings (:func:`~neurogshn.losses.relation.pointer_loss`): each should land on one
of the two phrases next to the relation; which pointer is the subject is left to the relation
loss (the benchmark's "fronted" captions name the object first).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Scale :math:`\lambda` of the displacement features (centroid differences are 0.05–0.6).
GEOMETRY_SCALE = 4.0


class RelationGeometry(nn.Module):
    """Subject and object pointers over the nodes and a classifier on their displacement (see
    module docstring).

    Args:
        dim: embedding size ``D``.
        classes: relation classes (the relation classifier's width).
        hidden: hidden units of the classifier.

    Shapes:
        - state ``K×D`` (the mask token's final state), nodes ``K×N×D`` (with their position
          encoding), node_mask ``K×N`` (True = real), node_pos ``K×N×2``
        - output: logits ``K×classes`` and pointers ``K×2×N`` (subject, object; rows sum to 1
          over the real nodes)
    """

    def __init__(self, dim: int, classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.query = nn.Linear(dim, 2 * dim)
        self.key_norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, dim)
        self.classifier = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.query.reset_parameters()
        self.key_norm.reset_parameters()
        self.key.reset_parameters()
        self.classifier[0].reset_parameters()
        nn.init.zeros_(self.classifier[2].weight)
        nn.init.zeros_(self.classifier[2].bias)

    def pointers(self, state: Tensor, nodes: Tensor, node_mask: Tensor) -> Tensor:
        """The subject and object pointers ``K×2×N`` (attention over the real nodes)."""
        k, d = state.shape
        queries = self.query(state).view(k, 2, d)
        keys = self.key(self.key_norm(nodes))
        scores = queries @ keys.transpose(1, 2) / math.sqrt(d)
        scores = scores.masked_fill(~node_mask.bool()[:, None, :], float("-inf"))
        return scores.softmax(-1)

    def forward(
        self, state: Tensor, nodes: Tensor, node_mask: Tensor, node_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        pointers = self.pointers(state, nodes, node_mask)
        centroids = pointers @ node_pos.to(pointers.dtype)  # K×2×2
        delta = centroids[:, 0] - centroids[:, 1]
        magnitude = delta.abs()
        features = (
            torch.cat([delta, magnitude, (magnitude[:, :1] - magnitude[:, 1:])], dim=-1)
            * GEOMETRY_SCALE
        )
        return self.classifier(features), pointers
