r"""Text-only priors of the masked relation and concept classifiers.

The ITM head scores a caption's stated relation ``r`` (and concept ``c``) by masked prediction
from the image, :math:`\log p(r \mid \text{image}, \text{caption with } r \text{ masked})`
(:mod:`neurogshn.losses.relation`). That is a log-probability, at most 0: summed into the
match score it lowers every caption that states something, the more the more it states, so
that an image→text ranking prefers captions that say little. Scored against the prior of the
same slot read from the caption alone it becomes a pointwise mutual information,

.. math::
    \operatorname{pmi}(r) = \log p(r \mid \text{image}, \tilde t)
      - \log q(r \mid \tilde t),

with :math:`\tilde t` the masked caption: positive when the image makes the stated phrase
more likely than the words around it do, negative when less, 0 when the image says nothing.
For a fixed caption the prior is a constant, so a text→image ranking is unchanged; an
image→text ranking no longer favours captions that say little.

:math:`q` is a linear classifier on the text encoder's state at the mask (a LayerNorm without
parameters, then one linear map per vocabulary, so that the two are fitted independently),
trained by cross-entropy on the same masked captions with the text states detached, so that
it learns the slot's prior without changing what the text encoder computes
(:mod:`neurogshn.losses.objective`; after the fact
:func:`neurogshn.training.text_prior.fit_text_prior`).
"""

from __future__ import annotations

from torch import Tensor, nn


class MaskedTextPrior(nn.Module):
    """Prior :math:`q(\\cdot \\mid \\tilde t)` of a masked relation and of a masked concept
    from the caption alone.

    Args:
        dim: size ``D`` of the text encoder's token states.
        relation_classes: relation vocabulary size (0: no relation prior).
        concept_classes: concept vocabulary size (0: no concept prior).

    Shapes:
        states ``K×D`` (the text encoder's token state at each mask) → logits ``K×R`` /
        ``K×C``.
    """

    def __init__(self, dim: int, relation_classes: int = 0, concept_classes: int = 0) -> None:
        super().__init__()
        if relation_classes <= 0 and concept_classes <= 0:
            raise ValueError("a text prior needs relation or concept classes")
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.relation = nn.Linear(dim, relation_classes) if relation_classes > 0 else None
        self.concept = nn.Linear(dim, concept_classes) if concept_classes > 0 else None

    def reset_parameters(self) -> None:
        for head in (self.relation, self.concept):
            if head is not None:
                head.reset_parameters()

    def relation_logits(self, states: Tensor) -> Tensor:
        """Relation-class logits of each masked state (``K×D`` → ``K×R``)."""
        if self.relation is None:
            raise ValueError("this text prior has no relation classes")
        return self.relation(self.norm(states))

    def concept_logits(self, states: Tensor) -> Tensor:
        """Concept-class logits of each masked state (``K×D`` → ``K×C``)."""
        if self.concept is None:
            raise ValueError("this text prior has no concept classes")
        return self.concept(self.norm(states))
