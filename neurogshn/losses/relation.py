r"""Masked relation prediction (MRP) on the ITM head: the ERNIE-ViL "relationship prediction"
task (Yu et al., AAAI 2021) with our fusion encoder.

The first relation phrase of a caption (a phrase of the model's relation vocabulary,
``itm_relation_vocab``; the benchmark's: left of, right of, above, below) is replaced by the
tokenizer's mask token, the masked caption and its image go through the ITM head's fusion
blocks, and a linear classifier on the mask token's final state predicts which relation was
there:

.. math::
    \mathcal{L}_{rel} = -\log p(r \mid \text{image}, \text{caption with } r \text{ masked})

Why: the ITM loss is one bit per pair, and on the benchmark a head trained with it never
learned to compare where two named objects are (relation swaps at chance, docs/model.md). The
masked relation can only be recovered from the positions of the objects the caption names,
which is exactly that comparison, with a 1-of-K target on every caption.

The same prediction scores relations at test time (:meth:`GSHN.relation_scores`): a caption
that states relation ``r`` gets :math:`\log p(r \mid \ldots)`, its relation-swapped twin the
log-probability of the same ``r`` with subject and object exchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=32)
def _pattern(vocab: tuple[str, ...]) -> re.Pattern[str]:
    phrases = sorted(vocab, key=len, reverse=True)  # "left of" before "left"
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.IGNORECASE)


def mask_relation(text: str, vocab: Sequence[str], mask_token: str) -> tuple[str, int] | None:
    """The caption with its first relation phrase replaced by ``mask_token``, and that
    relation's index in ``vocab``; ``None`` when no phrase of ``vocab`` occurs.

    Example: ``mask_relation("the red circle is left of the cube", RELATIONS, "[MASK]")`` →
    ``("the red circle is [MASK] the cube", 0)``.
    """
    if not vocab:
        return None
    match = _pattern(tuple(vocab)).search(text)
    if match is None:
        return None
    said = " ".join(match.group(1).lower().split())
    index = [" ".join(p.lower().split()) for p in vocab].index(said)
    return text[: match.start()] + mask_token + text[match.end() :], index


def relation_targets(
    captions: Sequence[str], vocab: Sequence[str], mask_token: str
) -> tuple[list[int], list[str], list[int]]:
    """For the captions that state a relation: their batch rows, masked texts and relation
    indices (see :func:`mask_relation`)."""
    rows, texts, classes = [], [], []
    for i, caption in enumerate(captions):
        found = mask_relation(caption, vocab, mask_token)
        if found is not None:
            rows.append(i)
            texts.append(found[0])
            classes.append(found[1])
    return rows, texts, classes
