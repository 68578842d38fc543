"""Scene logic: parse a statement or question of the benchmark's language and evaluate it on
a scene's geometry and attributes.

The caption, hard-negative and task generators *produce* text from templates; this module
*checks* that text independently: it parses the words back into a logical form and evaluates
that form against the scene (object attributes and visible-mask centroids). Every caption
written to disk is verified true here, every hard negative false, every VQA answer computed
here.

Language (case-insensitive; a final ``.`` or ``?`` is ignored)::

    statement := clause (("," | ", and" | "and") clause)*
    clause    := DET NP "is" REL DET NP          the red circle is left of the blue square
               | "there is" DET NP REL DET NP     there is a red circle left of the blue square
               | REL DET NP ("there is"|"is") DET NP
                                                 left of the blue square there is a red circle
               | "there is" DET NP                there is a red circle
               | "there is no" NP                 there is no red circle
               | "there are" NUM NP               there are three objects / two circles
               | "there is one" NP                there is one circle
               | "the" NP "is" (COLOR | SIZE)     the large circle is red
               | "there is" STUFF "in the background"
               | "there is no" STUFF "in the background"
    NP        := [SIZE] [COLOR] (SHAPE | "object")  (plural forms after a number)
    DET       := "the" | "a" | "an"
    question  := "what color is the" NP | "what shape is the" NP
               | "how many" NP "are there" | "is there" DET NP
               | "is the" NP REL "the" NP

Semantics (documented in docs/data.md):

- ``the NP`` must match **exactly one** object, else the clause is false (a failed
  presupposition is false; the generators only ever write unique descriptions in true text).
- ``a NP`` is existential; a relation clause with indefinites is true when *some* matching
  pair stands in the relation.
- Positions are centroids of the **visible** masks, normalised by the image width/height,
  y pointing down. ``A REL B`` holds when the displacement along REL's axis exceeds
  ``margin`` (default :data:`RELATION_MARGIN`) and exceeds ``dominance`` × the displacement
  along the other axis (default :data:`RELATION_DOMINANCE`). So at most one of the four
  relations holds for a pair, and a relation and its subject/object swap are never both true.
- A statement is the conjunction of its clauses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from neurogshn.data.relational.vocabulary import (
    COLORS,
    NUMBER_WORDS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZES,
    STUFF,
)

if TYPE_CHECKING:
    from neurogshn.segmentation.base import Segment

#: Minimum centroid displacement (fraction of the image side) for a relation to hold.
RELATION_MARGIN: float = 0.1
#: The displacement along the relation's axis must exceed this × the other axis'.
RELATION_DOMINANCE: float = 1.25

_SINGULAR = {p: s for s, p in PLURALS.items()}
_WILDCARD = {"object": None, "objects": None, "shape": None, "shapes": None}


class StatementError(ValueError):
    """A statement or question is not in the benchmark's language."""


@dataclass(frozen=True)
class SceneObject:
    """One thing of a scene.

    Args:
        id: its panoptic segment id.
        shape, color, size: attributes (vocabulary names).
        x, y: centroid of the visible mask, normalised to [0, 1] (y down).
        area: visible pixels.
    """

    id: int
    shape: str
    color: str
    size: str
    x: float
    y: float
    area: int = 0


@dataclass(frozen=True)
class SceneFacts:
    """What the logic knows about one scene: its things and its stuff categories."""

    objects: tuple[SceneObject, ...]
    stuff: tuple[str, ...] = ()
    margin: float = RELATION_MARGIN
    dominance: float = RELATION_DOMINANCE

    @classmethod
    def from_segmentation(
        cls,
        segment_map: np.ndarray,
        segments: Sequence[Segment],
        attributes: dict[int, dict[str, str]],
        margin: float = RELATION_MARGIN,
        dominance: float = RELATION_DOMINANCE,
    ) -> SceneFacts:
        """Facts from a panoptic segmentation (``segment_map`` H×W ids, ``segments`` with
        ``id``, ``category``, ``is_thing``) plus per-segment ``{"color", "size"}`` attributes.
        Centroids are computed from the masks."""
        seg_map = np.asarray(segment_map)
        h, w = seg_map.shape
        objs, stuff = [], []
        for s in segments:
            sid, cat, is_thing = int(s.id), s.category, bool(s.is_thing)
            if not is_thing:
                if cat is not None:
                    stuff.append(str(cat))
                continue
            ys, xs = np.nonzero(seg_map == sid)
            if len(xs) == 0 or sid not in attributes:
                continue
            att = attributes[sid]
            objs.append(
                SceneObject(
                    id=sid,
                    shape=str(cat),
                    color=str(att["color"]),
                    size=str(att["size"]),
                    x=float((xs.mean() + 0.5) / w),
                    y=float((ys.mean() + 0.5) / h),
                    area=len(xs),
                )
            )
        return cls(tuple(objs), tuple(stuff), margin, dominance)

    def relation(self, a: SceneObject, b: SceneObject) -> str | None:
        """The relation ``a REL b`` that holds (at most one), or ``None``."""
        for rel in RELATIONS:
            if self.holds(a, rel, b):
                return rel
        return None

    def holds(self, a: SceneObject, rel: str, b: SceneObject) -> bool:
        """Whether ``a rel b`` holds with the margin and dominance conditions."""
        main, other = _displacement(a, rel, b)
        return main > self.margin and main > self.dominance * abs(other)

    def closeness(self, a: SceneObject, rel: str, b: SceneObject) -> float:
        """How near ``a rel b`` is to holding: the displacement along the relation's axis
        over what :meth:`holds` asks of it, main / max(margin, dominance × |other|). Above 1
        exactly when the relation holds."""
        main, other = _displacement(a, rel, b)
        return main / max(self.margin, self.dominance * abs(other))

    def match(self, np_: NounPhrase) -> list[SceneObject]:
        """Objects matching a noun phrase's attributes."""
        return [
            o
            for o in self.objects
            if (np_.shape is None or o.shape == np_.shape)
            and (np_.color is None or o.color == np_.color)
            and (np_.size is None or o.size == np_.size)
        ]


def _displacement(a: SceneObject, rel: str, b: SceneObject) -> tuple[float, float]:
    """``b``'s displacement from ``a`` along the axis of ``rel`` (positive: the relation's
    direction) and along the other axis."""
    dx, dy = b.x - a.x, b.y - a.y
    if rel == "left of":
        return dx, dy
    if rel == "right of":
        return -dx, dy
    if rel == "above":
        return dy, dx
    if rel == "below":
        return -dy, dx
    raise StatementError(f"unknown relation {rel!r}")


# ---------------------------------------------------------------------------------------------
# Logical form
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NounPhrase:
    """``[size] [color] shape``; ``shape=None`` is the wildcard ``object``."""

    shape: str | None
    color: str | None = None
    size: str | None = None

    def words(self, plural: bool = False) -> str:
        noun = self.shape if self.shape is not None else "object"
        if plural:
            noun = PLURALS.get(noun, noun + "s")
        return " ".join(w for w in (self.size, self.color, noun) if w)


@dataclass(frozen=True)
class Relation:
    """``subject REL object``; ``definite`` per argument (``the`` vs ``a``)."""

    subject: NounPhrase
    rel: str
    object: NounPhrase
    subject_definite: bool = True
    object_definite: bool = True


@dataclass(frozen=True)
class Exists:
    np: NounPhrase
    negated: bool = False


@dataclass(frozen=True)
class Count:
    np: NounPhrase
    n: int


@dataclass(frozen=True)
class HasAttribute:
    np: NounPhrase
    attribute: str  # a color or a size


@dataclass(frozen=True)
class StuffPresent:
    stuff: str
    negated: bool = False


Clause = Relation | Exists | Count | HasAttribute | StuffPresent


@dataclass(frozen=True)
class Statement:
    clauses: tuple[Clause, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Question:
    """A VQA question: ``kind`` in color, shape, count, existence, relation."""

    kind: str
    np: NounPhrase
    other: NounPhrase | None = None
    rel: str | None = None


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.t = tokens
        self.i = 0
        self.text = text

    def fail(self, what: str) -> StatementError:
        near = " ".join(self.t[self.i : self.i + 4]) or "<end>"
        return StatementError(f"cannot parse {self.text!r}: expected {what} near {near!r}")

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def at(self, *words: str) -> bool:
        return tuple(self.t[self.i : self.i + len(words)]) == words

    def eat(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.eat(*words):
            raise self.fail(" ".join(words))

    def done(self) -> bool:
        return self.i >= len(self.t)

    def det(self) -> bool:
        """Parse a determiner; True for definite."""
        if self.eat("the"):
            return True
        if self.eat("a") or self.eat("an"):
            return False
        raise self.fail("'the', 'a' or 'an'")

    def rel(self) -> str:
        for r in RELATIONS:
            if self.eat(*r.split()):
                return r
        raise self.fail("a relation (left of, right of, above, below)")

    def at_rel(self) -> bool:
        return any(self.at(*r.split()) for r in RELATIONS)

    def np(self, plural: bool = False) -> NounPhrase:
        size = color = None
        if self.peek() in SIZES:
            size = self.t[self.i]
            self.i += 1
        if self.peek() in COLORS:
            color = self.t[self.i]
            self.i += 1
        word = self.peek()
        if word is None:
            raise self.fail("a shape or 'object'")
        if plural:
            if word in _SINGULAR:
                shape: str | None = _SINGULAR[word]
            elif word in ("objects", "shapes"):
                shape = None
            else:
                raise self.fail("a plural shape or 'objects'")
        else:
            if word in SHAPES:
                shape = word
            elif word in ("object", "shape"):
                shape = None
            else:
                raise self.fail("a shape or 'object'")
        self.i += 1
        return NounPhrase(shape, color, size)

    def number(self) -> int:
        word = self.peek()
        if word in NUMBER_WORDS:
            self.i += 1
            return NUMBER_WORDS.index(word)
        if word is not None and word.isdigit():
            self.i += 1
            return int(word)
        raise self.fail("a number")

    def clause(self) -> Clause:
        if self.at_rel():
            rel = self.rel()
            obj_def = self.det()
            obj = self.np()
            if not (self.eat("there", "is") or self.eat("is")):
                raise self.fail("'there is' or 'is'")
            subj_def = self.det()
            subj = self.np()
            return Relation(subj, rel, obj, subj_def, obj_def)
        if self.eat("there", "are"):
            n = self.number()
            return Count(self.np(plural=n != 1), n)
        if self.eat("there", "is"):
            negated = self.eat("no")
            if self.peek() in STUFF:
                stuff = self.t[self.i]
                self.i += 1
                self.expect("in", "the", "background")
                return StuffPresent(stuff, negated)
            if negated:
                return Exists(self.np(), negated=True)
            if self.eat("one"):
                return Count(self.np(), 1)
            definite = self.det()
            subj = self.np()
            if self.at_rel():
                rel = self.rel()
                obj_def = self.det()
                return Relation(subj, rel, self.np(), definite, obj_def)
            if definite:
                raise self.fail("'a' (existence needs an indefinite)")
            return Exists(subj)
        definite = self.det()
        subj = self.np()
        self.expect("is")
        word = self.peek()
        if word in COLORS or word in SIZES:
            if not definite:
                raise self.fail("'the' before an attribute statement")
            self.i += 1
            return HasAttribute(subj, str(word))
        rel = self.rel()
        obj_def = self.det()
        return Relation(subj, rel, self.np(), definite, obj_def)


@functools.lru_cache(maxsize=8192)
def parse_statement(text: str) -> Statement:
    """Parse a statement into its logical form (raises :class:`StatementError`; cached)."""
    p = _Parser(_tokens(text), text)
    clauses = [p.clause()]
    while not p.done():
        if not p.eat("and"):
            raise p.fail("'and' or the end of the statement")
        clauses.append(p.clause())
    return Statement(tuple(clauses))


@functools.lru_cache(maxsize=8192)
def parse_question(text: str) -> Question:
    """Parse a VQA question (raises :class:`StatementError`)."""
    p = _Parser(_tokens(text), text)
    if p.eat("what", "color", "is", "the"):
        q = Question("color", p.np())
    elif p.eat("what", "shape", "is", "the"):
        q = Question("shape", p.np())
    elif p.eat("how", "many"):
        np_ = p.np(plural=True)
        p.expect("are", "there")
        q = Question("count", np_)
    elif p.eat("is", "there"):
        if p.det():
            raise p.fail("'a' or 'an'")
        q = Question("existence", p.np())
    elif p.eat("is", "the"):
        subj = p.np()
        rel = p.rel()
        p.expect("the")
        q = Question("relation", subj, p.np(), rel)
    else:
        raise p.fail("a question (what color/what shape/how many/is there/is the)")
    if not p.done():
        raise p.fail("the end of the question")
    return q


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _candidates(scene: SceneFacts, np_: NounPhrase, definite: bool) -> list[SceneObject]:
    found = scene.match(np_)
    if definite and len(found) != 1:
        return []
    return found


def evaluate_clause(clause: Clause, scene: SceneFacts) -> bool:
    """Truth of one clause on ``scene``."""
    if isinstance(clause, Relation):
        subs = _candidates(scene, clause.subject, clause.subject_definite)
        objs = _candidates(scene, clause.object, clause.object_definite)
        return any(a.id != b.id and scene.holds(a, clause.rel, b) for a in subs for b in objs)
    if isinstance(clause, Exists):
        return bool(scene.match(clause.np)) != clause.negated
    if isinstance(clause, Count):
        return len(scene.match(clause.np)) == clause.n
    if isinstance(clause, HasAttribute):
        found = _candidates(scene, clause.np, True)
        if not found:
            return False
        o = found[0]
        return clause.attribute in (o.color, o.size)
    if isinstance(clause, StuffPresent):
        return (clause.stuff in scene.stuff) != clause.negated
    raise TypeError(f"not a clause: {clause!r}")


def evaluate(statement: str | Statement, scene: SceneFacts) -> bool:
    """Truth of a statement (text or parsed) on ``scene``: the conjunction of its clauses."""
    st = parse_statement(statement) if isinstance(statement, str) else statement
    return all(evaluate_clause(c, scene) for c in st.clauses)


#: Why a statement is false of a scene (:func:`why_false`), first failing clause:
#: ``binding``: a noun phrase's colour and shape are in the scene but on different objects;
#: ``size``: colour and shape are on one object, of another size; ``object``: the colour or
#: the shape is absent (or a negated one present); ``not_unique``: ``the NP`` matches several
#: objects; ``relation``: both objects there, not in that relation; ``count``, ``attribute``,
#: ``stuff``: a count, a ``the NP is COLOR`` or a background clause fails.
FALSE_REASONS: tuple[str, ...] = (
    "binding",
    "size",
    "object",
    "not_unique",
    "relation",
    "count",
    "attribute",
    "stuff",
)


def _why_absent(np_: NounPhrase, scene: SceneFacts) -> str:
    if np_.size is not None and scene.match(replace(np_, size=None)):
        return "size"
    colors = {o.color for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    if (np_.color is None or np_.color in colors) and (np_.shape is None or np_.shape in shapes):
        return "binding"
    return "object"


def _why_clause_false(clause: Clause, scene: SceneFacts) -> str:
    if isinstance(clause, Relation):
        for np_, definite in (
            (clause.subject, clause.subject_definite),
            (clause.object, clause.object_definite),
        ):
            found = scene.match(np_)
            if not found:
                return _why_absent(np_, scene)
            if definite and len(found) > 1:
                return "not_unique"
        return "relation"
    if isinstance(clause, Exists):
        return "object" if clause.negated else _why_absent(clause.np, scene)
    if isinstance(clause, Count):
        return "count"
    if isinstance(clause, HasAttribute):
        found = scene.match(clause.np)
        if not found:
            return _why_absent(clause.np, scene)
        return "not_unique" if len(found) > 1 else "attribute"
    return "stuff"


def why_false(statement: str | Statement, scene: SceneFacts) -> str | None:
    """Why ``statement`` is false of ``scene``: a :data:`FALSE_REASONS` entry for its first
    false clause, or ``None`` when it is true.

    A retrieval diagnostic: it tells a model that confuses which object has which colour
    (``binding``) from one that misses objects (``object``) or relations (``relation``).
    """
    st = parse_statement(statement) if isinstance(statement, str) else statement
    for clause in st.clauses:
        if not evaluate_clause(clause, scene):
            return _why_clause_false(clause, scene)
    return None


def truth_matrix(statements: Sequence[str], scenes: Sequence[SceneFacts]) -> np.ndarray:
    """Truth of every statement on every scene.

    Used to find out what a set of captions allows: a caption true of several images of a
    retrieval pool cannot single out its own (see
    :func:`~neurogshn.tasks.metrics.retrieval_oracle`).

    Args:
        statements: statements of the benchmark's language (e.g. a split's captions).
        scenes: the scenes (e.g. a split's images).

    Returns:
        ``bool`` array, ``[statement, scene]``.

    Shapes:
        output: ``len(statements) × len(scenes)``.

    Raises:
        StatementError: if a statement is not in the language (the message quotes it).
    """
    out = np.zeros((len(statements), len(scenes)), dtype=bool)
    for row, text in enumerate(statements):
        st = parse_statement(text)
        for col, scene in enumerate(scenes):
            out[row, col] = all(evaluate_clause(c, scene) for c in st.clauses)
    return out


def answer(question: str | Question, scene: SceneFacts) -> str | None:
    """The answer to a VQA question on ``scene`` (vocabulary word, digit, ``yes``/``no``), or
    ``None`` when a definite description does not pick out exactly one object."""
    q = parse_question(question) if isinstance(question, str) else question
    if q.kind in ("color", "shape"):
        found = scene.match(q.np)
        if len(found) != 1:
            return None
        return found[0].color if q.kind == "color" else found[0].shape
    if q.kind == "count":
        return str(len(scene.match(q.np)))
    if q.kind == "existence":
        return "yes" if scene.match(q.np) else "no"
    if q.kind == "relation":
        subs, objs = scene.match(q.np), scene.match(q.other)  # type: ignore[arg-type]
        if len(subs) != 1 or len(objs) != 1 or subs[0].id == objs[0].id:
            return None
        return "yes" if scene.holds(subs[0], q.rel, objs[0]) else "no"  # type: ignore[arg-type]
    raise StatementError(f"unknown question kind {q.kind!r}")


def true_relations(scene: SceneFacts) -> list[tuple[SceneObject, str, SceneObject]]:
    """Every ordered pair ``(a, rel, b)`` for which a relation holds."""
    out = []
    for a in scene.objects:
        for b in scene.objects:
            if a.id != b.id:
                r = scene.relation(a, b)
                if r is not None:
                    out.append((a, r, b))
    return out


def article(words: str) -> str:
    """``a`` or ``an`` for the words that follow."""
    return "an" if words[:1] in "aeiou" and words else "a"


def join_clauses(parts: Iterable[str]) -> str:
    """Join clause texts with ``and``."""
    return " and ".join(parts)


# ---------------------------------------------------------------------------------------------
# Statements about a pair of images (NLVR2-style)
# ---------------------------------------------------------------------------------------------

#: Quantifiers over the two images: ``in both images, S`` …
PAIR_QUANTIFIERS: tuple[str, ...] = (
    "in both images",
    "in exactly one image",
    "in neither image",
    "in the left image",
    "in the right image",
)


@dataclass(frozen=True)
class PairStatement:
    """``quantifier`` + inner statement, or a comparison ``the left image has more NP than the
    right image`` (``compare`` = the noun phrase, ``quantifier`` = ``"more"``/``"fewer"``)."""

    quantifier: str
    inner: Statement | None = None
    compare: NounPhrase | None = None


@functools.lru_cache(maxsize=8192)
def parse_pair_statement(text: str) -> PairStatement:
    """Parse a statement about a (left, right) image pair.

    Forms: ``<quantifier>, <statement>`` with a quantifier from :data:`PAIR_QUANTIFIERS`, or
    ``the left image has (more|fewer) NP than the right image``.
    """
    toks = _tokens(text)
    for q in PAIR_QUANTIFIERS:
        qt = q.split()
        if toks[: len(qt)] == qt:
            rest = toks[len(qt) :]
            return PairStatement(q, parse_statement(" ".join(rest)))
    p = _Parser(toks, text)
    if p.eat("the", "left", "image", "has"):
        if p.eat("more"):
            quant = "more"
        elif p.eat("fewer"):
            quant = "fewer"
        else:
            raise p.fail("'more' or 'fewer'")
        np_ = p.np(plural=True)
        p.expect("than", "the", "right", "image")
        if not p.done():
            raise p.fail("the end of the statement")
        return PairStatement(quant, compare=np_)
    raise StatementError(
        f"cannot parse {text!r}: expected 'in both images', 'in exactly one image', "
        "'in neither image', 'in the left/right image' or 'the left image has more/fewer …'"
    )


#: Short names of the pair-statement forms (reporting groups of NLVR2 accuracy).
PAIR_KINDS: dict[str, str] = {
    "in both images": "both",
    "in exactly one image": "exactly_one",
    "in neither image": "neither",
    "in the left image": "left",
    "in the right image": "right",
    "more": "compare",
    "fewer": "compare",
}


def pair_statement_kind(text: str) -> str | None:
    """The form of a pair statement (:data:`PAIR_KINDS`: ``both``, ``exactly_one``,
    ``neither``, ``left``, ``right``, ``compare``), or ``None`` when it is not in the
    benchmark's grammar (e.g. a real NLVR2 sentence)."""
    try:
        return PAIR_KINDS[parse_pair_statement(text).quantifier]
    except StatementError:
        return None


def evaluate_pair(statement: str | PairStatement, left: SceneFacts, right: SceneFacts) -> bool:
    """Truth of a pair statement on the (left, right) scenes."""
    st = parse_pair_statement(statement) if isinstance(statement, str) else statement
    if st.compare is not None:
        nl, nr = len(left.match(st.compare)), len(right.match(st.compare))
        return nl > nr if st.quantifier == "more" else nl < nr
    assert st.inner is not None
    tl, tr = evaluate(st.inner, left), evaluate(st.inner, right)
    return {
        "in both images": tl and tr,
        "in exactly one image": tl != tr,
        "in neither image": not tl and not tr,
        "in the left image": tl,
        "in the right image": tr,
    }[st.quantifier]


# ---------------------------------------------------------------------------------------------
# Visual entailment labels
# ---------------------------------------------------------------------------------------------

VE_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")


def entailment_label(statement: str | Statement, scene: SceneFacts) -> str:
    """Three-way label of a statement on ``scene``.

    - ``entailment``: the statement is true.
    - ``neutral``: the statement is one relation clause whose two definite descriptions each
      pick out exactly one object, but the two objects stand in **no** relation by the margin
      and dominance rule (their displacement is too small or too diagonal), so the scene
      neither supports the statement nor its converse.
    - ``contradiction``: anything else that is false (a different relation holds, a named
      object is absent, an attribute differs, a count is wrong).
    """
    st = parse_statement(statement) if isinstance(statement, str) else statement
    if evaluate(st, scene):
        return "entailment"
    if len(st.clauses) == 1 and isinstance(st.clauses[0], Relation):
        c = st.clauses[0]
        subs, objs = scene.match(c.subject), scene.match(c.object)
        if (
            c.subject_definite
            and c.object_definite
            and len(subs) == 1
            and len(objs) == 1
            and subs[0].id != objs[0].id
            and scene.relation(subs[0], objs[0]) is None
        ):
            return "neutral"
    return "contradiction"
