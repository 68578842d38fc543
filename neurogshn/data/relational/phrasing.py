"""Phrasing families of the relational-scenes captions: one statement, many wordings.

A caption's *content* (which objects, which relation, which background or count) is decided by
:mod:`neurogshn.data.relational.captions`; how it is *worded* is decided here. A
:class:`PhrasingFamily` is one coherent way of saying things: its phrases for the four
relations (and, for some families, a possessive construction in which the object comes first:
"the blue square has the red circle to its left"), its clause frames (copula, existential,
fronted, verbs such as "sits" or "lies", noun-phrase captions such as "an image of …"), how it
joins a second relation, how it states the background and the number of objects (number words
or numerals), its size words and its colour spellings.

The families are split three ways (:data:`FAMILY_SPLITS`): the training families, the
validation families and the test families. Validation and test families share no relation
phrase, clause frame, joiner, background or count construction with the training families or
with each other (``tests/data/test_data_phrasing.py`` checks it), so a model scored on the test
families reads wording it never trained on, and settings chosen on the validation families
cannot have been tuned to the test's wording. Object categories and colours keep their names
(they are the data set's documented vocabulary); the test families spell one colour
differently ("grey").

Rendering (:func:`render`) is deterministic given a caption's :class:`Style` (random integers
drawn once per caption), so a caption and its hard negatives (the same content with one thing
changed) are worded alike: a relation swap differs from its caption in the order of the noun
phrases only. Every rendered noun phrase's characters are returned with it, for phrase
grounding.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from neurogshn.data.relational.logic import article
from neurogshn.data.relational.vocabulary import NUMBER_WORDS, RELATIONS

if TYPE_CHECKING:
    from neurogshn.data.relational.captions import CaptionSpec
    from neurogshn.data.relational.logic import NounPhrase


@dataclass(frozen=True)
class PhrasingFamily:
    """One way of wording the benchmark's statements.

    Frame slots: ``{the_A}`` / ``{a_A}`` the subject's noun phrase with its determiner,
    ``{the_B}`` / ``{a_B}`` the object's, ``{R}`` a relation phrase, ``{P}`` a possessive
    relation phrase (frames with ``{P}`` put the object first: "{the_B} has {the_A} {P}");
    the second relation's frame uses ``C``, ``D``, ``R2``, ``P2``. Outer templates: ``{clause}``
    (the first relation clause), ``{first}`` / ``{second}`` (the two clauses of a
    two-relation caption), ``{S}`` a background (stuff) name and ``{N}`` a number.

    Args:
        name: the family's name (recorded in the data set manifest).
        relations: relation (vocabulary name) → phrases for ``{R}``.
        frames: clause frames of a single relation.
        second: the frame of the second relation clause.
        joiners: how two relation clauses are joined.
        backgrounds: a relation clause plus a background statement.
        counts: a relation clause plus the number of objects.
        possessive: relation → phrases for ``{P}`` (needed when a frame uses ``{P}``).
        numbers: ``"words"`` ("four") or ``"digits"`` ("4").
        sizes: size (vocabulary name) → the word used.
        colors: colour (vocabulary name) → the word used, where it differs.
    """

    name: str
    relations: Mapping[str, tuple[str, ...]]
    frames: tuple[str, ...]
    second: str
    joiners: tuple[str, ...]
    backgrounds: tuple[str, ...]
    counts: tuple[str, ...]
    possessive: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    numbers: str = "words"
    sizes: Mapping[str, str] = field(default_factory=lambda: {"small": "small", "large": "large"})
    colors: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rel in RELATIONS:
            if not self.relations.get(rel):
                raise ValueError(f"family {self.name}: no phrase for {rel!r}")
            if any("{P" in f for f in (*self.frames, self.second)) and not self.possessive.get(rel):
                raise ValueError(f"family {self.name}: no possessive phrase for {rel!r}")
        if self.numbers not in ("words", "digits"):
            raise ValueError(f"family {self.name}: numbers must be 'words' or 'digits'")

    def noun_phrase(self, phrase: NounPhrase) -> str:
        """The words of a noun phrase (``[size] [colour] shape``) in this family."""
        words = []
        if phrase.size:
            words.append(self.sizes.get(phrase.size, phrase.size))
        if phrase.color:
            words.append(self.colors.get(phrase.color, phrase.color))
        words.append(phrase.shape if phrase.shape is not None else "object")
        return " ".join(words)

    def number(self, n: int) -> str:
        if self.numbers == "digits" or not 0 <= n < len(NUMBER_WORDS):
            return str(n)
        return NUMBER_WORDS[n]


#: Families of the training split: the original benchmark wording ("plain") and three more.
TRAIN_FAMILIES: tuple[PhrasingFamily, ...] = (
    PhrasingFamily(
        name="plain",
        relations={
            "left of": ("left of",),
            "right of": ("right of",),
            "above": ("above",),
            "below": ("below",),
        },
        frames=(
            "{the_A} is {R} {the_B}",
            "there is {a_A} {R} {the_B}",
            "{R} {the_B} there is {a_A}",
            "{a_A} is {R} {a_B}",
        ),
        second="{the_C} is {R2} {the_D}",
        joiners=("{first}, and {second}",),
        backgrounds=("{clause}, and there is {S} in the background",),
        counts=("there are {N} objects, and {clause}",),
    ),
    PhrasingFamily(
        name="to_the",
        relations={
            "left of": ("to the left of",),
            "right of": ("to the right of",),
            "above": ("over",),
            "below": ("under",),
        },
        frames=(
            "{the_A} sits {R} {the_B}",
            "you can see {a_A} {R} {the_B}",
            "{a_A} is {R} {a_B}",
        ),
        second="{the_C} sits {R2} {the_D}",
        joiners=("{first}, while {second}",),
        backgrounds=("{clause}, with {S} in the background",),
        counts=("{clause}; there are {N} shapes in total",),
        numbers="digits",
    ),
    PhrasingFamily(
        name="side",
        relations={
            "left of": ("on the left side of",),
            "right of": ("on the right side of",),
            "above": ("higher than",),
            "below": ("lower than",),
        },
        frames=(
            "{the_A} is {R} {the_B}",
            "{a_A} lies {R} {the_B}",
            "{the_A} is located {R} {the_B}",
        ),
        second="{the_C} is {R2} {the_D}",
        joiners=("{first}; {second}",),
        backgrounds=("{clause}; the background is {S}",),
        counts=("the scene has {N} items, and {clause}",),
        sizes={"small": "little", "large": "big"},
    ),
    PhrasingFamily(
        name="possessive",
        relations={
            "left of": ("on the left of",),
            "right of": ("on the right of",),
            "above": ("above",),
            "below": ("below",),
        },
        possessive={
            "left of": ("to its left", "on its left"),
            "right of": ("to its right", "on its right"),
            "above": ("above it",),
            "below": ("below it", "under it"),
        },
        frames=("{the_B} has {the_A} {P}", "{the_A} is {R} {the_B}"),
        second="{the_D} has {the_C} {P2}",
        joiners=("{first}, and {second}",),
        backgrounds=("{clause}, and the background is {S}",),
        counts=("{N} objects are shown, and {clause}",),
        numbers="digits",
    ),
)

#: Families of the validation split (held-out phrasings used to choose settings).
VAL_FAMILIES: tuple[PhrasingFamily, ...] = (
    PhrasingFamily(
        name="val_hand",
        relations={
            "left of": ("on the left-hand side of",),
            "right of": ("on the right-hand side of",),
            "above": ("higher up than",),
            "below": ("lower down than",),
        },
        frames=("{the_A} is placed {R} {the_B}", "an image of {a_A} {R} {a_B}"),
        second="{the_C} is placed {R2} {the_D}",
        joiners=("{first}, and besides, {second}",),
        backgrounds=("{clause}, in front of {S}",),
        counts=("in total {N} things appear, and {clause}",),
        sizes={"small": "tiny", "large": "huge"},
    ),
    PhrasingFamily(
        name="val_at",
        relations={
            "left of": ("at the left of",),
            "right of": ("at the right of",),
            "above": ("atop",),
            "below": ("down below",),
        },
        frames=("{a_A} stands {R} {the_B}", "{R} {the_B} we see {a_A}"),
        second="{the_C} stands {R2} {the_D}",
        joiners=("{first}, whereas {second}",),
        backgrounds=("{clause}, against a background of {S}",),
        counts=("{N} shapes are visible, and {clause}",),
        numbers="digits",
        sizes={"small": "tiny", "large": "huge"},
    ),
)

#: Families of the test split (held-out phrasings, never used to choose anything).
TEST_FAMILIES: tuple[PhrasingFamily, ...] = (
    PhrasingFamily(
        name="test_further",
        relations={
            "left of": ("further left than",),
            "right of": ("further right than",),
            "above": ("on top of",),
            "below": ("beneath",),
        },
        frames=("{the_A} can be seen {R} {the_B}", "{a_A} is positioned {R} {a_B}"),
        second="{the_C} is positioned {R2} {the_D}",
        joiners=("{first}, and also {second}",),
        backgrounds=("{clause}, set against {S}",),
        counts=("the picture contains {N} figures, and {clause}",),
        numbers="digits",
        sizes={"small": "miniature", "large": "giant"},
        colors={"gray": "grey"},
    ),
    PhrasingFamily(
        name="test_more",
        relations={
            "left of": ("more to the left than",),
            "right of": ("more to the right than",),
            "above": ("further up than",),
            "below": ("underneath",),
        },
        frames=("{a_A} appears {R} {the_B}", "we notice {a_A} {R} {the_B}"),
        second="{the_C} appears {R2} {the_D}",
        joiners=("{first}; meanwhile {second}",),
        backgrounds=("{clause}, on a background of {S}",),
        counts=("{N} figures can be counted, and {clause}",),
        sizes={"small": "miniature", "large": "giant"},
        colors={"gray": "grey"},
    ),
)

FAMILIES: dict[str, PhrasingFamily] = {
    f.name: f for f in (*TRAIN_FAMILIES, *VAL_FAMILIES, *TEST_FAMILIES)
}

#: Which families each group of splits uses.
FAMILY_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(f.name for f in TRAIN_FAMILIES),
    "val": tuple(f.name for f in VAL_FAMILIES),
    "test": tuple(f.name for f in TEST_FAMILIES),
}


def families_for(split: str, heldout: bool) -> tuple[str, ...]:
    """The phrasing families of a split: with ``heldout``, ``val`` and ``test`` get their own
    families and every other split (``train``, ``test_seen`` …) the training families;
    without it every split uses the training families."""
    if heldout and split in ("val", "test"):
        return FAMILY_SPLITS[split]
    return FAMILY_SPLITS["train"]


@dataclass(frozen=True)
class Style:
    """The random choices that word one caption (and its hard negatives): the family and,
    per choice, a random integer taken modulo the number of options."""

    family: str
    frame: int = 0
    phrase: int = 0
    second_phrase: int = 0
    joiner: int = 0
    outer: int = 0


@dataclass(frozen=True)
class Rendered:
    """A rendered statement: its text and, for each noun-phrase slot (``"a"`` … ``"d"``), the
    characters ``[start, end)`` of its words (attributes and category, no determiner)."""

    text: str
    spans: tuple[tuple[int, int, str], ...]


class _Slot:
    """A noun phrase to place into a frame (its span is recorded)."""

    def __init__(self, words: str, slot: str, determiner: str) -> None:
        self.words, self.slot, self.determiner = words, slot, determiner


def _fill(template: str, values: Mapping[str, str | _Slot | Rendered]) -> Rendered:
    text = ""
    spans: list[tuple[int, int, str]] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        text += literal
        if name is None:
            continue
        value = values[name]
        if isinstance(value, _Slot):
            text += value.determiner + " "
            spans.append((len(text), len(text) + len(value.words), value.slot))
            text += value.words
        elif isinstance(value, Rendered):
            spans.extend((a + len(text), b + len(text), s) for a, b, s in value.spans)
            text += value.text
        else:
            text += value
    return Rendered(text, tuple(spans))


def _pick(options: Sequence[str], k: int) -> str:
    return options[k % len(options)]


def _clause(
    family: PhrasingFamily,
    frame: str,
    subject: NounPhrase,
    rel: str,
    obj: NounPhrase,
    choice: int,
    names: tuple[str, str, str, str] = ("A", "B", "R", "P"),
    slots: tuple[str, str] = ("a", "b"),
) -> Rendered:
    sa, sb, r, p = names
    words_a, words_b = family.noun_phrase(subject), family.noun_phrase(obj)
    values: dict[str, str | _Slot | Rendered] = {
        f"the_{sa}": _Slot(words_a, slots[0], "the"),
        f"a_{sa}": _Slot(words_a, slots[0], article(words_a)),
        f"the_{sb}": _Slot(words_b, slots[1], "the"),
        f"a_{sb}": _Slot(words_b, slots[1], article(words_b)),
        r: _pick(family.relations[rel], choice),
    }
    if family.possessive:
        values[p] = _pick(family.possessive[rel], choice)
    return _fill(frame, values)


def render(spec: CaptionSpec, style: Style) -> Rendered:
    """Word ``spec`` in ``style``'s family (see the module docstring)."""
    family = FAMILIES[style.family]
    first = _clause(
        family, _pick(family.frames, style.frame), spec.a, spec.rel, spec.b, style.phrase
    )
    if spec.kind == "relation":
        body = first
    elif spec.kind == "two_relations":
        assert spec.c is not None and spec.d is not None and spec.rel2 is not None
        second = _clause(
            family,
            family.second,
            spec.c,
            spec.rel2,
            spec.d,
            style.second_phrase,
            names=("C", "D", "R2", "P2"),
            slots=("c", "d"),
        )
        body = _fill(_pick(family.joiners, style.joiner), {"first": first, "second": second})
    elif spec.kind == "background":
        assert spec.stuff is not None
        body = _fill(_pick(family.backgrounds, style.outer), {"clause": first, "S": spec.stuff})
    elif spec.kind == "count":
        assert spec.n is not None
        body = _fill(
            _pick(family.counts, style.outer), {"clause": first, "N": family.number(spec.n)}
        )
    else:
        raise ValueError(f"unknown caption kind {spec.kind!r}")
    return Rendered(body.text + ".", body.spans)


def canonical(spec: CaptionSpec) -> str:
    """``spec`` in the scene logic's grammar (:mod:`neurogshn.data.relational.logic`): the
    form the benchmark's truth oracle parses, whatever family worded the caption."""

    def np(phrase: NounPhrase) -> str:
        return phrase.words()

    clause = f"the {np(spec.a)} is {spec.rel} the {np(spec.b)}"
    if spec.kind == "relation":
        return clause + "."
    if spec.kind == "two_relations":
        assert spec.c is not None and spec.d is not None
        return f"{clause}, and the {np(spec.c)} is {spec.rel2} the {np(spec.d)}."
    if spec.kind == "background":
        return f"{clause}, and there is {spec.stuff} in the background."
    if spec.kind == "count":
        assert spec.n is not None
        noun = "object" if spec.n == 1 else "objects"
        return f"there are {spec.n} {noun}, and {clause}."
    raise ValueError(f"unknown caption kind {spec.kind!r}")


def family_phrases(family: PhrasingFamily) -> set[str]:
    """Every relation phrase, frame and outer construction of a family (for the tests that
    check that families of different splits share none)."""
    out = {p for ps in family.relations.values() for p in ps}
    out |= {p for ps in family.possessive.values() for p in ps}
    out |= set(family.frames) | {family.second}
    out |= set(family.joiners) | set(family.backgrounds) | set(family.counts)
    return out


__all__ = [
    "FAMILIES",
    "FAMILY_SPLITS",
    "TEST_FAMILIES",
    "TRAIN_FAMILIES",
    "VAL_FAMILIES",
    "PhrasingFamily",
    "Rendered",
    "Style",
    "canonical",
    "families_for",
    "family_phrases",
    "render",
]
