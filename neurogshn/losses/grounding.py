r"""Phrase-grounding term of the ITM head: the tokens of a grounded noun phrase should attend
to the nodes of the segments it names.

For the positive (image, caption) pairs, with :math:`A_{t n}` the first fusion block's
cross-attention of token :math:`t` to node :math:`n` (averaged over heads) and
:math:`S_t` the nodes of the segments named by the phrase that contains token :math:`t`:

.. math::
    \mathcal{L}_{ground} = -\frac{1}{|\mathcal{T}|} \sum_{t \in \mathcal{T}}
        \log \sum_{n \in S_t} A_{t n}

over the grounded tokens :math:`\mathcal{T}` of the batch (MDETR/GLIP-style word-region
supervision, here on the attention itself). Why: the ITM loss alone is a single bit per pair;
measured on the benchmark, a head trained with it finds which node a phrase names only slowly,
and attribute binding stays at chance (docs/model.md "Relational matching"). The phrases come
from :mod:`neurogshn.data.grounding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: Per caption: ``(char start, char end, node indices within its graph)`` of each phrase.
PhraseNodes = tuple[int, int, tuple[int, ...]]


@dataclass
class GroundingTargets:
    """Flattened (pair, token, node) targets; entries with the same ``group`` belong to one
    grounded token.

    Shapes:
        rows, tokens, nodes, group: ``K`` (long); ``num_groups`` grounded tokens.
    """

    rows: Tensor
    tokens: Tensor
    nodes: Tensor
    group: Tensor
    num_groups: int


def grounding_targets(
    offsets: Sequence[Sequence[tuple[int, int]]],
    phrases: Sequence[Sequence[PhraseNodes] | None],
    device: torch.device | str | None = None,
) -> GroundingTargets | None:
    """Token-level targets from character spans.

    Args:
        offsets: per caption, the ``(start, end)`` characters of each token (the tokenizer's
            offset mapping; special tokens ``(0, 0)``).
        phrases: per caption, its grounded phrases (or ``None``).

    Returns:
        the targets, or ``None`` when no token of the batch is grounded.
    """
    rows: list[int] = []
    tokens: list[int] = []
    nodes: list[int] = []
    group: list[int] = []
    g = 0
    for row, (offs, found) in enumerate(zip(offsets, phrases, strict=True)):
        for start, end, node_ids in found or ():
            if not node_ids:
                continue
            for t, (a, b) in enumerate(offs):
                if b > a and a >= start and b <= end:
                    for n in node_ids:
                        rows.append(row)
                        tokens.append(t)
                        nodes.append(int(n))
                        group.append(g)
                    g += 1
    if not g:
        return None

    def long(v: list[int]) -> Tensor:
        return torch.tensor(v, dtype=torch.long, device=device)

    return GroundingTargets(long(rows), long(tokens), long(nodes), long(group), g)


def grounding_loss(
    attention: Tensor, targets: GroundingTargets, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """The grounding loss and the fraction of grounded tokens whose most-attended node is one
    of their targets.

    Args:
        attention: cross-attention ``P×L×N`` (rows sum to 1 over real nodes).
        targets: from :func:`grounding_targets` (``rows`` index ``P``).

    Returns:
        (scalar loss, detached accuracy).
    """
    a = attention[targets.rows, targets.tokens, targets.nodes]
    mass = a.new_zeros(targets.num_groups).index_add(0, targets.group, a)
    loss = -torch.log(mass + eps).mean()
    with torch.no_grad():
        best = attention[targets.rows, targets.tokens].argmax(-1)
        hit = (best == targets.nodes).to(a.dtype)
        per_group = a.new_zeros(targets.num_groups).index_add(0, targets.group, hit)
        accuracy = (per_group > 0).to(a.dtype).mean()
    return loss, accuracy


def referent_loss(
    logits: Tensor, targets: GroundingTargets, token_mask: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Binary cross-entropy of the referent gate (which tokens name something,
    :class:`~neurogshn.model.grounded_relation.GroundedRelationScore`): in every caption with
    a grounded token, the tokens of its grounded phrases are 1 and its other real tokens 0
    (captions without groundings are left out).

    Args:
        logits: the gate's logits ``B×L``.
        targets: from :func:`grounding_targets` (``rows`` index ``B``).
        token_mask: ``B×L``, True for real tokens (special tokens included: they name nothing).

    Returns:
        (scalar loss, detached accuracy over the scored tokens).
    """
    labels = torch.zeros_like(logits)
    labels[targets.rows, targets.tokens] = 1.0
    captions = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    captions[targets.rows] = True
    scored = token_mask.bool() & captions[:, None]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[scored], labels[scored])
    with torch.no_grad():
        accuracy = ((logits[scored] > 0).to(labels.dtype) == labels[scored]).to(logits.dtype)
    return loss, accuracy.mean()
