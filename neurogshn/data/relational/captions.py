"""Captions and ARO-style hard negatives for relational scenes.

A caption is first decided as *content* (:class:`CaptionSpec`: one or two true spatial
relations, optionally with the background or the number of objects; every caption names the
attributes — color, shape, sometimes size — of the objects it relates) and then worded by a
phrasing family (:mod:`neurogshn.data.relational.phrasing`). Hard negatives change one thing
about the content of the caption's first relation and are worded like their caption:

- ``relation_swap``: subject and object exchange places (word order changes, as in ARO's
  VG-Relation), e.g. "the red circle is left of the blue square" → "the blue square is left
  of the red circle";
- ``attribute_swap``: the colors (or, if the colors agree, the sizes) of the two objects are
  exchanged (ARO's VG-Attribution);
- ``object_replace``: one object is replaced by a color+shape combination absent from the
  scene;
- ``size_flip``: one object is given the other size — a named size is flipped ("the small red
  circle" → "the large red circle"), or, where the caption names neither size, the wrong size
  is named. Attribute swaps exchange sizes only when both are named and differ, which is rare,
  so without this kind nothing in the data asks a model to read sizes.
- ``count_flip`` (``count`` captions only): the number of objects is off by
  one ("there are four objects, …" → "there are five objects, …"; one more, or one fewer
  when the scene already has the most objects a caption can name). Without it, a count is
  told apart only from other images' captions, and a wrong count was, with a wrong relation,
  the largest cause of a false first candidate in retrieval (docs/results.md);
- ``stuff_replace`` (``background`` captions only): the background is named
  after a stuff class the scene does not have ("… and there is grass in the background" →
  "… and there is water in the background").
- ``unrelated_pair``: the first relation restated about a pair of the scene's objects
  between which *no* relation holds (one of the two objects replaced by another object of the
  scene), with the relation nearest to holding between them — a near miss, typically a
  diagonal arrangement that fails the dominance condition. The other kinds never put such a
  pair before a model, and images where the stated pair sits diagonally were the largest cause
  of a false first image in text → image retrieval (docs/results.md).

Wording is template-based; *truth* is not: every caption is checked true and every negative
false by :mod:`neurogshn.data.relational.logic` from the scene's geometry, on the content's
logical form (:func:`~neurogshn.data.relational.phrasing.canonical`). A negative that the
logic does not find false is discarded (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from neurogshn.data.relational.logic import (
    NounPhrase,
    SceneFacts,
    SceneObject,
    evaluate,
    true_relations,
)
from neurogshn.data.relational.phrasing import canonical
from neurogshn.data.relational.vocabulary import COLORS, RELATIONS, SHAPES, SIZES, STUFF

#: Largest number of objects a count caption (or its count flip) states.
MAX_STATED_COUNT = 7

#: Hard-negative kinds, in the order of the ``hard_negatives_{split}.json`` fields.
HARD_NEGATIVE_KINDS: tuple[str, ...] = (
    "relation_swap",
    "attribute_swap",
    "object_replace",
    "size_flip",
    "count_flip",
    "stuff_replace",
    "unrelated_pair",
)

#: Statement kinds of a caption, drawn in a random order per image (four of seven captions
#: state one relation; the wording of each kind comes from :mod:`.phrasing`).
CAPTION_KINDS: tuple[str, ...] = (
    "relation",
    "relation",
    "relation",
    "relation",
    "two_relations",
    "background",
    "count",
)


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption states, before it is worded: its kind (``relation``,
    ``two_relations``, ``background`` or ``count``) and slot values (first relation
    ``A R B``; ``C R2 D`` a second relation, ``stuff`` a background, ``n`` the number of
    objects). :func:`~neurogshn.data.relational.phrasing.render` words it,
    :func:`~neurogshn.data.relational.phrasing.canonical` gives its logical form."""

    kind: str
    a: NounPhrase
    rel: str
    b: NounPhrase
    c: NounPhrase | None = None
    rel2: str | None = None
    d: NounPhrase | None = None
    stuff: str | None = None
    n: int | None = None

    def canonical(self) -> str:
        """The statement in the scene logic's grammar (what the truth oracle parses)."""
        return canonical(self)


def describe(obj: SceneObject, with_size: bool) -> NounPhrase:
    """A noun phrase naming ``obj`` (color and shape, size optional)."""
    return NounPhrase(obj.shape, obj.color, obj.size if with_size else None)


def _unique(scene: SceneFacts, np_: NounPhrase) -> bool:
    return len(scene.match(np_)) == 1


def make_captions(scene: SceneFacts, rng: np.random.Generator, n: int = 5) -> list[CaptionSpec]:
    """``n`` true captions with distinct content (fewer only if the scene cannot give ``n``).

    Raises:
        ValueError: if no relation holds in the scene.
    """
    rels = true_relations(scene)
    if not rels:
        raise ValueError("no spatial relation holds between the objects of this scene")
    order = [CAPTION_KINDS[int(i)] for i in rng.permutation(len(CAPTION_KINDS))]
    specs: list[CaptionSpec] = []
    seen: set[str] = set()
    attempts = 0
    while len(specs) < n and attempts < 20 * n:
        kind = order[attempts % len(order)]
        attempts += 1
        a, r, b = rels[int(rng.integers(len(rels)))]
        size_a, size_b = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        if a.color == b.color and a.size != b.size:
            # name both sizes, so that an attribute swap (of sizes) can be built
            size_a = size_b = True
        spec = CaptionSpec(kind, describe(a, size_a), r, describe(b, size_b))
        if kind == "two_relations":
            others = [t for t in rels if {t[0].id, t[2].id} != {a.id, b.id}]
            if not others:
                continue
            c, r2, d = others[int(rng.integers(len(others)))]
            spec = replace(spec, c=describe(c, False), rel2=r2, d=describe(d, False))
        elif kind == "background":
            if not scene.stuff:
                continue
            spec = replace(spec, stuff=scene.stuff[int(rng.integers(len(scene.stuff)))])
        elif kind == "count":
            spec = replace(spec, n=len(scene.objects))
        if not (_unique(scene, spec.a) and _unique(scene, spec.b)):
            continue
        form = spec.canonical()
        if form in seen or not evaluate(form, scene):
            continue
        seen.add(form)
        specs.append(spec)
    return specs


def relation_swap(spec: CaptionSpec) -> CaptionSpec:
    """Subject and object of the first relation exchanged."""
    return replace(spec, a=spec.b, b=spec.a)


def attribute_swaps(spec: CaptionSpec) -> list[CaptionSpec]:
    """Candidates with attributes exchanged between the two objects of the first relation."""
    out = []
    if spec.a.color != spec.b.color:
        out.append(
            replace(
                spec, a=replace(spec.a, color=spec.b.color), b=replace(spec.b, color=spec.a.color)
            )
        )
    if spec.a.size and spec.b.size and spec.a.size != spec.b.size:
        out.append(
            replace(spec, a=replace(spec.a, size=spec.b.size), b=replace(spec.b, size=spec.a.size))
        )
    return out


def size_flips(spec: CaptionSpec, scene: SceneFacts) -> list[CaptionSpec]:
    """Candidates with one object of the first relation given the other size.

    Objects whose size the caption names come first (the size is flipped); an object named
    without a size gets the size it does not have. Needs no random draw, so adding this kind
    leaves every other file of a generated data set unchanged.
    """
    named, unnamed = [], []
    for slot in ("a", "b"):
        phrase: NounPhrase = getattr(spec, slot)
        if phrase.size:
            size = phrase.size
        else:
            matches = scene.match(phrase)
            if len(matches) != 1:
                continue
            size = matches[0].size
        other = [s for s in SIZES if s != size]
        if not other:
            continue
        cand = replace(spec, **{slot: replace(phrase, size=other[0])})
        (named if phrase.size else unnamed).append(cand)
    return named + unnamed


def count_flips(spec: CaptionSpec) -> list[CaptionSpec]:
    """Candidates with the stated number of objects one more, then one fewer (a ``count``
    caption only; numbers above :data:`MAX_STATED_COUNT` or below two are skipped, so that
    every count is a plural). Needs no random draw, like :func:`size_flips`."""
    if spec.kind != "count" or spec.n is None:
        return []
    return [replace(spec, n=n) for n in (spec.n + 1, spec.n - 1) if 2 <= n <= MAX_STATED_COUNT]


def stuff_replacements(spec: CaptionSpec, scene: SceneFacts) -> list[CaptionSpec]:
    """Candidates naming a background stuff class absent from ``scene`` (a ``background``
    caption only), in ``STUFF`` order starting after the stated one: no random draw, so the
    other files of a generated data set stay as they were."""
    if spec.kind != "background" or spec.stuff is None or spec.stuff not in STUFF:
        return []
    start = STUFF.index(spec.stuff)
    names = [STUFF[(start + k) % len(STUFF)] for k in range(1, len(STUFF))]
    return [replace(spec, stuff=name) for name in names if name not in scene.stuff]


def unrelated_pairs(spec: CaptionSpec, scene: SceneFacts) -> list[CaptionSpec]:
    """Candidates restating the first relation about a pair with no relation between them.

    The object (then the subject) of the first relation is replaced by another object of the
    scene that has no relation to the one kept, named uniquely (its size named as the
    replaced phrase's was, or also when that is needed to be unique), and the relation is
    the one nearest to holding between the two (:meth:`SceneFacts.closeness`). Nearest misses
    come first. Needs no random draw, like :func:`size_flips`.
    """
    out: list[tuple[float, CaptionSpec]] = []
    kept_a, kept_b = scene.match(spec.a), scene.match(spec.b)
    if len(kept_a) != 1 or len(kept_b) != 1:
        return []
    for slot, kept, replaced in (("b", kept_a[0], spec.b), ("a", kept_b[0], spec.a)):
        slot_out = []
        for obj in scene.objects:
            if obj.id in (kept_a[0].id, kept_b[0].id) or scene.relation(kept, obj) is not None:
                continue  # (a relation holds one way exactly when its converse holds the other)
            phrase = describe(obj, replaced.size is not None)
            if not _unique(scene, phrase):
                phrase = describe(obj, True)
                if not _unique(scene, phrase):
                    continue
            pair = (kept, obj) if slot == "b" else (obj, kept)
            close, rel = max((scene.closeness(pair[0], r, pair[1]), r) for r in RELATIONS)
            slot_out.append((close, replace(spec, rel=rel, **{slot: phrase})))
        out.extend(sorted(slot_out, key=lambda t: -t[0]))
    return [cand for _, cand in out]


def absent_phrase(
    scene: SceneFacts, rng: np.random.Generator, like: NounPhrase
) -> NounPhrase | None:
    """A color+shape noun phrase that matches no object of ``scene`` (keeps ``like``'s size)."""
    present = {(o.color, o.shape) for o in scene.objects}
    combos = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    if not combos:
        return None
    c, s = combos[int(rng.integers(len(combos)))]
    return NounPhrase(s, c, like.size)


def hard_negatives(
    spec: CaptionSpec, scene: SceneFacts, rng: np.random.Generator
) -> dict[str, CaptionSpec | None]:
    """``{kind: negative content or None}`` for one caption; each negative verified false."""
    out: dict[str, CaptionSpec | None] = dict.fromkeys(HARD_NEGATIVE_KINDS)
    caption = spec.canonical()

    def accept(candidate: CaptionSpec) -> CaptionSpec | None:
        form = candidate.canonical()
        if form != caption and not evaluate(form, scene):
            return candidate
        return None

    def first_accepted(candidates: list[CaptionSpec]) -> CaptionSpec | None:
        return next((c for c in map(accept, candidates) if c is not None), None)

    out["relation_swap"] = accept(relation_swap(spec))
    out["attribute_swap"] = first_accepted(attribute_swaps(spec))
    replace_object = bool(rng.random() < 0.5)
    for which in (replace_object, not replace_object):
        target = spec.b if which else spec.a
        new = absent_phrase(scene, rng, target)
        if new is None:
            continue
        cand = replace(spec, b=new) if which else replace(spec, a=new)
        found = accept(cand)
        if found is not None:
            out["object_replace"] = found
            break
    out["size_flip"] = first_accepted(size_flips(spec, scene))
    out["count_flip"] = first_accepted(count_flips(spec))
    out["stuff_replace"] = first_accepted(stuff_replacements(spec, scene))
    out["unrelated_pair"] = first_accepted(unrelated_pairs(spec, scene))
    return out
