r"""Masked relation prediction (MRP) on the ITM head: the ERNIE-ViL "relationship prediction"
task (Yu et al., AAAI 2021) with our fusion encoder.

A relation phrase of a caption (a phrase of the model's relation vocabulary,
``itm_relation_vocab``; the benchmark's: left of, right of, above, below) is replaced by the
tokenizer's mask token, the masked caption and its image go through the ITM head's fusion
blocks, and a linear classifier on the mask token's final state predicts which relation was
there:

.. math::
    \mathcal{L}_{rel} = -\log p(r \mid \text{image}, \text{caption with } r \text{ masked})

Which phrases (``itm_relation_mentions``): ``"first"`` masks only the first one; ``"all"``
makes one masked copy per phrase, so that a second relation ("…, and the C is above the D")
is learnt and scored too. With ``"first"`` the classifier, asked about the second phrase of
the benchmark's two-relation captions, was right 42.5 % of the time against 99.5–100 % for
the first (session 14): the ITM head reads nothing after the first relation otherwise.

Why: the ITM loss is one bit per pair, and on the benchmark a head trained with it never
learned to compare where two named objects are (relation swaps at chance, docs/model.md). The
masked relation can only be recovered from the positions of the objects the caption names,
which is exactly that comparison, with a 1-of-K target on every caption.

With ``itm_relation_none`` the classifier has one more class, *no relation*, whose targets
are the batch's ``unrelated_pair`` hard negatives (:func:`unrelated_pair_logits`): captions
that state a relation between two objects where none holds, so that such a pair's
probability goes to that class instead of being spread over the relations.

The same prediction scores relations at test time (:meth:`GSHN.relation_scores`): a caption
that states relation ``r`` gets :math:`\log p(r \mid \ldots)`, its relation-swapped twin the
log-probability of the same ``r`` with subject and object exchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import torch
from torch import Tensor

from neurogshn.losses.grounding import PhraseNodes
from neurogshn.model.config import RELATION_MENTIONS
from neurogshn.model.node_count import number_values


class MaskedLogits(NamedTuple):
    """Masked prediction of the phrases some texts state.

    Attributes:
        rows: ``K`` text index of each masked phrase (a text with several phrases repeats).
        logits: ``K×V`` classifier logits over the vocabulary, given the text's image.
        targets: ``K`` index of the phrase that was masked.
        prior_logits: ``K×V`` logits of the text-only prior
            (:class:`~neurogshn.model.text_prior.MaskedTextPrior`, on detached text states),
            or ``None`` when the model has none.
        pointers: ``K×2×N`` subject/object pointers of the relation geometry
            (``itm_relation_geometry``), else ``None``.
        spans: ``K`` character spans ``(start, end)`` of the masked phrases in their texts.
        counts: ``K`` soft node counts of the concept count (``itm_concept_count``), else
            ``None``.
    """

    rows: Tensor
    logits: Tensor
    targets: Tensor
    prior_logits: Tensor | None = None
    pointers: Tensor | None = None
    spans: tuple[tuple[int, int], ...] = ()
    counts: Tensor | None = None


@lru_cache(maxsize=32)
def _pattern(vocab: tuple[str, ...]) -> re.Pattern[str]:
    phrases = sorted(vocab, key=len, reverse=True)  # "left of" before "left"
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.IGNORECASE)


def relation_mentions(text: str, vocab: Sequence[str]) -> list[tuple[int, int, int]]:
    """Every phrase of ``vocab`` in ``text``, in order: ``(start, end, index in vocab)``
    (character span; matching is case-insensitive, on whole words)."""
    if not vocab:
        return []
    canonical = [" ".join(p.lower().split()) for p in vocab]
    return [
        (m.start(), m.end(), canonical.index(" ".join(m.group(1).lower().split())))
        for m in _pattern(tuple(vocab)).finditer(text)
    ]


def mask_relations(text: str, vocab: Sequence[str], mask_token: str) -> list[tuple[str, int]]:
    """One copy of the caption per relation phrase of ``vocab`` in it, in order, with that
    phrase replaced by ``mask_token``, and the relation's index in ``vocab``.

    Example: ``mask_relations("the red circle is left of the cube, and the cube is above the
    cone", RELATIONS, "[MASK]")`` → ``[("the red circle is [MASK] the cube, and the cube is
    above the cone", 0), ("the red circle is left of the cube, and the cube is [MASK] the
    cone", 2)]``.
    """
    return [
        (text[:start] + mask_token + text[end:], index)
        for start, end, index in relation_mentions(text, vocab)
    ]


def mask_relation(text: str, vocab: Sequence[str], mask_token: str) -> tuple[str, int] | None:
    """The caption with its first relation phrase replaced by ``mask_token``, and that
    relation's index in ``vocab``; ``None`` when no phrase of ``vocab`` occurs.

    Example: ``mask_relation("the red circle is left of the cube", RELATIONS, "[MASK]")`` →
    ``("the red circle is [MASK] the cube", 0)``.
    """
    found = mask_relations(text, vocab, mask_token)
    return found[0] if found else None


def relation_targets(
    captions: Sequence[str], vocab: Sequence[str], mask_token: str, mentions: str = "first"
) -> tuple[list[int], list[str], list[int]]:
    """For the captions that state a relation: their batch rows, masked texts and relation
    indices (see :func:`mask_relations`). ``mentions="first"``: one entry per caption, its
    first relation; ``"all"``: one entry per relation phrase (a row then repeats)."""
    rows, texts, classes, _ = _relation_copies(captions, vocab, mask_token, mentions)
    return rows, texts, classes


def _relation_copies(
    captions: Sequence[str], vocab: Sequence[str], mask_token: str, mentions: str
) -> tuple[list[int], list[str], list[int], list[tuple[int, int]]]:
    if mentions not in RELATION_MENTIONS:
        raise ValueError(f"mentions must be one of {RELATION_MENTIONS}, got {mentions!r}")
    rows, texts, classes, spans = [], [], [], []
    for i, caption in enumerate(captions):
        found = relation_mentions(caption, vocab)
        for start, end, index in found if mentions == "all" else found[:1]:
            rows.append(i)
            texts.append(caption[:start] + mask_token + caption[end:])
            classes.append(index)
            spans.append((start, end))
    return rows, texts, classes, spans


def masked_relation_logits(
    model: Any,
    texts: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
    mentions: str | None = None,
) -> MaskedLogits | None:
    """Mask the relations the texts state, encode the masked texts and classify each mask
    with the ITM head against the text's own image.

    Args:
        model: a GSHN with a relation classifier (``itm_relation_weight > 0``).
        texts: ``B`` texts; text ``i`` pairs with image ``i``.
        nodes: dense node embeddings ``B×N×D``; node_mask ``B×N``; node_pos ``B×N×2``.
        mentions: ``"first"`` or ``"all"`` relation phrases of each text (see
            :func:`relation_targets`); ``None``: the model's ``itm_relation_mentions``.

    Returns:
        :class:`MaskedLogits` (``rows K``, ``logits K×R``, relation indices ``K``, the text
        prior's ``K×R`` logits or ``None``) for the ``K`` masked relations (whose mask
        survived truncation; with ``"all"`` a row appears once per relation), or ``None`` when
        there is none.
    """
    if mentions is None:
        mentions = getattr(model.config, "itm_relation_mentions", "first")
    prior = getattr(model, "text_prior", None)
    return _masked_logits(
        model,
        texts,
        model.config.itm_relation_vocab,
        mentions,
        model.itm_head.relation_logits,
        nodes,
        node_mask,
        node_pos,
        None if prior is None or prior.relation is None else prior.relation_logits,
        extra=None if getattr(model.itm_head, "relation_geometry", None) is None else "pointers",
    )


#: The hard-negative kind whose first relation is the "no relation" class's target.
NO_RELATION_KIND = "unrelated_pair"


def unrelated_pair_logits(
    model: Any,
    texts: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
) -> MaskedLogits | None:
    """Masked relation prediction on texts whose *first* relation names two objects between
    which no relation holds (``unrelated_pair`` hard negatives, text ``i`` about image
    ``i``): as :func:`masked_relation_logits` with ``mentions="first"``, the target being the
    classifier's last class, *no relation* (``itm_relation_none``), and no text prior (the
    prior predicts what captions state).

    Returns:
        :class:`MaskedLogits` (``prior_logits`` ``None``), or ``None`` when no text states a
        relation.
    """
    found = masked_relation_logits(model, texts, nodes, node_mask, node_pos, "first")
    if found is None:
        return None
    none = torch.full_like(found.targets, len(model.config.itm_relation_vocab))
    return found._replace(targets=none, prior_logits=None)


def masked_concept_logits(
    model: Any,
    texts: Sequence[str],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
) -> MaskedLogits | None:
    """Masked concept prediction: as :func:`masked_relation_logits` with every mention of a
    phrase of the model's ``itm_concept_vocab`` (e.g. "grass" in "there is grass in the
    background", "four" in "there are four objects") masked in turn and classified over
    that vocabulary.

    Why: with a caption's one ITM bit the head learnt to read the first clause only; a
    background or a count stated after it was read by nothing (ITM accuracy on background
    swaps 52–58 %, on count flips 41–46 %, docs/results.md). A 1-of-K target on each mention
    is the relation classifier's remedy applied to them.

    Returns:
        :class:`MaskedLogits` over the concept vocabulary, or ``None`` when no text names a
        concept.
    """
    prior = getattr(model, "text_prior", None)
    return _masked_logits(
        model,
        texts,
        model.config.itm_concept_vocab,
        "all",
        model.itm_head.concept_logits,
        nodes,
        node_mask,
        node_pos,
        None if prior is None or prior.concept is None else prior.concept_logits,
        extra=None if getattr(model.itm_head, "concept_count", None) is None else "counts",
    )


def _masked_logits(
    model: Any,
    texts: Sequence[str],
    vocab: Sequence[str],
    mentions: str,
    classify: Callable[..., Tensor],
    nodes: Tensor,
    node_mask: Tensor,
    node_pos: Tensor | None,
    prior: Callable[[Tensor], Tensor] | None = None,
    extra: str | None = None,
) -> MaskedLogits | None:
    """``extra``: ``"pointers"`` or ``"counts"``, what ``classify`` also returns (with
    ``return_<extra>=True``) into that field of the result."""
    found = encode_masked(model, texts, vocab, mentions, nodes.device)
    if found is None:
        return None
    idx, enc = found.rows, found.encoding
    inputs = (
        enc.token_embeds,
        enc.attention_mask,
        nodes[idx],
        node_mask[idx],
        None if node_pos is None else node_pos[idx],
        found.mask_index,
    )
    extras = {}
    if extra is not None:
        logits, extras[extra] = classify(*inputs, **{f"return_{extra}": True})
    else:
        logits = classify(*inputs)
    prior_logits = None if prior is None else prior(found.mask_states().detach())
    return MaskedLogits(idx, logits, found.targets, prior_logits, spans=found.spans, **extras)


class MaskedTexts(NamedTuple):
    """The masked copies of some texts, encoded (see :func:`encode_masked`)."""

    rows: Tensor
    encoding: Any
    mask_index: Tensor
    targets: Tensor
    spans: tuple[tuple[int, int], ...] = ()

    def mask_states(self) -> Tensor:
        """The text encoder's token state at each copy's mask (``K×D``)."""
        rows = torch.arange(len(self.mask_index), device=self.mask_index.device)
        return self.encoding.token_embeds[rows, self.mask_index]


def encode_masked(
    model: Any, texts: Sequence[str], vocab: Sequence[str], mentions: str, device: Any
) -> MaskedTexts | None:
    """Mask the phrases of ``vocab`` the texts state (:func:`relation_targets`), encode the
    masked copies with the model's text encoder and locate each mask: ``rows K`` (the text of
    each copy), the :class:`~neurogshn.model.text.TextEncoding`, ``mask_index K`` (token index
    of the mask), ``targets K`` (the masked phrase) and ``spans`` (the phrase's characters in
    its text). Copies whose mask was truncated away are left out; ``None`` when none is
    left."""
    te = model.text_encoder
    rows, masked, classes, spans = _relation_copies(texts, vocab, te.mask_token, mentions)
    if not rows:
        return None
    where = te.mask_positions(masked)
    keep = [k for k, w in enumerate(where) if w >= 0]
    if not keep:
        return None
    return MaskedTexts(
        torch.tensor([rows[k] for k in keep], device=device),
        te([masked[k] for k in keep]),
        torch.tensor([where[k] for k in keep], device=device),
        torch.tensor([classes[k] for k in keep], device=device),
        tuple(spans[k] for k in keep),
    )


def pointer_targets(
    found: MaskedLogits,
    groundings: Sequence[Sequence[PhraseNodes] | None],
    num_nodes: int,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Where the relation geometry's pointers should land: for each masked relation, the
    nodes of the two grounded phrases of its text nearest to the masked phrase (by characters
    between them; the benchmark's subject and object, in either order).

    Args:
        found: masked relations of some texts (with ``spans``).
        groundings: per text (the ``found.rows`` index into it), its grounded phrases
            ``(start, end, node indices)`` or ``None``.
        num_nodes: ``N`` (node indices at or beyond it are dropped).

    Returns:
        ``keep K'`` (indices into ``found``'s rows with two such phrases) and the two phrases'
        node masks ``K'×N`` each, or ``None`` when no masked relation has two.
    """
    keep, first, second = [], [], []
    for k, (row, (start, end)) in enumerate(zip(found.rows.tolist(), found.spans)):
        phrases = groundings[row] if row < len(groundings) else None
        near = []
        for p_start, p_end, nodes in phrases or ():
            nodes = tuple(n for n in nodes if 0 <= n < num_nodes)
            if not nodes or (p_start < end and start < p_end):
                continue
            gap = start - p_end if p_end <= start else p_start - end
            near.append((gap, nodes))
        near.sort(key=lambda item: item[0])
        if len(near) < 2 or set(near[0][1]) == set(near[1][1]):
            continue
        keep.append(k)
        first.append(near[0][1])
        second.append(near[1][1])
    if not keep:
        return None
    device = found.logits.device

    def masks(sets: list[tuple[int, ...]]) -> Tensor:
        out = torch.zeros(len(sets), num_nodes, dtype=torch.bool, device=device)
        for i, nodes in enumerate(sets):
            out[i, list(nodes)] = True
        return out

    return torch.tensor(keep, device=device), masks(first), masks(second)


def pointer_loss(
    found: MaskedLogits, groundings: Sequence[Sequence[PhraseNodes] | None]
) -> tuple[Tensor, Tensor] | None:
    r"""Grounding of the relation geometry's subject and object pointers
    (:mod:`neurogshn.model.relation_geometry`) on the two phrases of :func:`pointer_targets`,
    :math:`S_1` and :math:`S_2`, in whichever order fits better:

    .. math::
        \mathcal{L}_{ptr} = \tfrac12 \min\Big(
            -\log a^s(S_1) - \log a^o(S_2),\; -\log a^s(S_2) - \log a^o(S_1)\Big),
        \qquad a(S) = \textstyle\sum_{n \in S} a_n

    averaged over the masked relations that have both phrases. Which pointer is the subject
    is the relation loss's to decide (its gradient reaches the pointers through the
    displacement).

    Returns:
        the loss and the detached share of relations whose two pointers both peak inside
        their phrases (in that order), or ``None`` without pointers or targets.
    """
    if found.pointers is None:
        return None
    targets = pointer_targets(found, groundings, found.pointers.shape[-1])
    if targets is None:
        return None
    keep, first, second = targets
    pointers = found.pointers[keep]

    def mass(p: Tensor, nodes: Tensor) -> Tensor:
        return (p * nodes).sum(-1).clamp_min(1e-8).log()

    subject, obj = pointers[:, 0], pointers[:, 1]
    straight = -(mass(subject, first) + mass(obj, second))
    crossed = -(mass(subject, second) + mass(obj, first))
    loss = 0.5 * torch.minimum(straight, crossed).mean()
    peak_s = subject.argmax(-1, keepdim=True)
    peak_o = obj.argmax(-1, keepdim=True)

    def hit(nodes: Tensor, peak: Tensor) -> Tensor:
        return nodes.gather(1, peak).squeeze(1)

    straight_hit = hit(first, peak_s) & hit(second, peak_o)
    crossed_hit = hit(second, peak_s) & hit(first, peak_o)
    chosen = torch.where(straight <= crossed, straight_hit, crossed_hit)
    return loss, chosen.float().mean().detach()


def count_loss(found: MaskedLogits, vocab: Sequence[str]) -> tuple[Tensor, Tensor] | None:
    r"""Supervision of the concept count (:mod:`neurogshn.model.node_count`) on the masked
    concepts that are number words: a caption about its own image that says :math:`v`
    ("there are five objects") wants the soft count :math:`c = v`,

    .. math::
        \mathcal{L}_{count} = \operatorname{mean}\, \mathrm{Huber}_1(c - v)

    over those masks.

    Args:
        found: masked concepts of texts about their own images (with ``counts``).
        vocab: the concept vocabulary (``found.targets`` index it).

    Returns:
        the loss and the detached share of counts that round to :math:`v`, or ``None``
        without counts or number words.
    """
    if found.counts is None:
        return None
    values = torch.tensor(
        [-1.0 if v is None else float(v) for v in number_values(vocab)],
        device=found.counts.device,
    )[found.targets]
    keep = values >= 0
    if not bool(keep.any()):
        return None
    counts, values = found.counts[keep], values[keep].to(found.counts.dtype)
    loss = torch.nn.functional.huber_loss(counts, values, delta=1.0)
    return loss, (counts.round() == values).float().mean().detach()
