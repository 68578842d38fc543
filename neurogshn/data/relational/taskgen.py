"""Task files of the relational-scenes benchmark: VQA, visual entailment, NLVR2-style pairs.

Questions and statements come from templates; their answers and labels come from
:mod:`neurogshn.data.relational.logic` evaluated on the scene (never from the template). Yes/no
answers, entailment labels and pair truth values are balanced by drawing, per item, the label that
is currently rarest and searching candidates that the logic gives that label.

Schemas (docs/data.md):

- ``vqa_{split}.json``: ``{"answers": [...], "questions": [{"question_id", "image_id",
  "question", "answer", "type"}]}``
- ``ve_{split}.json``: ``{"labels": [...], "items": [{"id", "image_id", "statement",
  "label"}]}``
- ``nlvr2_{split}.json``: ``{"items": [{"id", "left_image_id", "right_image_id",
  "statement", "label", "type"}]}`` (``type``: the statement's form, for per-form accuracy)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.data.relational.logic import (
    PAIR_QUANTIFIERS,
    VE_LABELS,
    NounPhrase,
    SceneFacts,
    SceneObject,
    answer,
    article,
    entailment_label,
    evaluate_pair,
    pair_statement_kind,
    true_relations,
)
from neurogshn.data.relational.vocabulary import (
    COLORS,
    CONVERSE,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
    STUFF,
    vqa_answers,
)
from neurogshn.errors import ConfigError
from neurogshn.utils.io import write_json_atomic

VQA_TYPES: tuple[str, ...] = ("color", "shape", "count", "relation", "existence")
_MAX_TRIES = 40


def _pick(rng: np.random.Generator, seq: list[Any] | tuple[Any, ...]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _unique_np(scene: SceneFacts, obj: SceneObject, keys: tuple[str, ...]) -> NounPhrase | None:
    """The shortest description of ``obj`` from ``keys`` (+size) that is unique, or None."""
    base = {
        "shape": obj.shape if "shape" in keys else None,
        "color": obj.color if "color" in keys else None,
    }
    for size in (None, obj.size):
        np_ = NounPhrase(base["shape"], base["color"], size)
        if len(scene.match(np_)) == 1:
            return np_
    return None


def _rarest(counts: Counter, labels: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Labels ordered rarest first (ties broken at random)."""
    keys = [(counts[lab], float(rng.random()), lab) for lab in labels]
    return [lab for _, _, lab in sorted(keys)]


# ---------------------------------------------------------------------------------------------
# VQA
# ---------------------------------------------------------------------------------------------


def _vqa_candidate(
    kind: str, want: str | None, scene: SceneFacts, rng: np.random.Generator
) -> str | None:
    objs = list(scene.objects)
    if kind == "color":
        np_ = _unique_np(scene, _pick(rng, objs), ("shape",))
        return None if np_ is None else f"what color is the {np_.words()}?"
    if kind == "shape":
        np_ = _unique_np(scene, _pick(rng, objs), ("color",))
        return None if np_ is None else f"what shape is the {np_.words()}?"
    if kind == "existence":
        if want == "yes":
            o = _pick(rng, objs)
            np_ = NounPhrase(
                o.shape,
                o.color if rng.random() < 0.7 else None,
                o.size if rng.random() < 0.3 else None,
            )
        else:
            np_ = NounPhrase(_pick(rng, SHAPES), _pick(rng, COLORS))
        return f"is there {article(np_.words())} {np_.words()}?"
    if kind == "relation":
        # only pairs that stand in a clear relation: "no" means another relation holds,
        # never "too close to tell"
        rels = true_relations(scene)
        if not rels:
            return None
        a, rel, b = _pick(rng, rels)
        if want == "no":
            rel = _pick(rng, [r for r in RELATIONS if r != rel])
        na = _unique_np(scene, a, ("shape", "color"))
        nb = _unique_np(scene, b, ("shape", "color"))
        if na is None or nb is None:
            return None
        return f"is the {na.words()} {rel} the {nb.words()}?"
    raise ValueError(kind)


#: What a count question may count: each shape, each color, each size, all objects.
COUNT_PHRASES: tuple[NounPhrase, ...] = (
    *(NounPhrase(s) for s in SHAPES),
    *(NounPhrase(None, c) for c in COLORS),
    *(NounPhrase(None, None, z) for z in ("small", "large")),
    NounPhrase(None),
)


def _count_question(
    scene: SceneFacts, counts: Counter, rng: np.random.Generator
) -> tuple[str, str]:
    """A count question whose answer is the rarest so far among those this scene can give."""
    by_answer: dict[str, list[NounPhrase]] = {}
    for np_ in COUNT_PHRASES:
        by_answer.setdefault(str(len(scene.match(np_))), []).append(np_)
    want = _rarest(counts, tuple(sorted(by_answer)), rng)[0]
    np_ = _pick(rng, by_answer[want])
    q = f"how many {np_.words(plural=True)} are there?"
    a = answer(q, scene)
    assert a == want, (q, a, want)  # the logic agrees with the table
    return q, want


def make_vqa(facts: Mapping[int, SceneFacts], rng: np.random.Generator) -> dict[str, Any]:
    """One question of each type per image (when the scene allows it), answers by the logic;
    existence and relation answers balanced yes/no, count answers as even over 0–6 as the
    scenes allow."""
    questions = []
    yes_no: dict[str, Counter] = {"existence": Counter(), "relation": Counter()}
    counts: Counter = Counter()
    qid = 0
    for image_id in sorted(facts):
        scene = facts[image_id]
        for kind in VQA_TYPES:
            if kind == "count":
                made = _count_question(scene, counts, rng)
                counts[made[1]] += 1
            else:
                made = _search_question(kind, scene, yes_no, rng)
                if made is None:
                    continue
                if kind in yes_no:
                    yes_no[kind][made[1]] += 1
            questions.append(
                {
                    "question_id": qid,
                    "image_id": int(image_id),
                    "question": made[0],
                    "answer": made[1],
                    "type": kind,
                }
            )
            qid += 1
    return {"answers": vqa_answers(), "questions": questions}


def _search_question(
    kind: str, scene: SceneFacts, yes_no: dict[str, Counter], rng: np.random.Generator
) -> tuple[str, str] | None:
    """A question of ``kind`` whose answer (by the scene logic) is the rarer yes/no so far."""
    wants: list[str | None] = (
        _rarest(yes_no[kind], ("yes", "no"), rng) if kind in yes_no else [None]
    )
    for want in wants:
        for _ in range(_MAX_TRIES):
            q = _vqa_candidate(kind, want, scene, rng)
            if q is None:
                continue
            a = answer(q, scene)
            if a is None or (want is not None and a != want):
                continue
            return (q, a)
    return None


# ---------------------------------------------------------------------------------------------
# Visual entailment
# ---------------------------------------------------------------------------------------------


def _ve_candidate(label: str, scene: SceneFacts, rng: np.random.Generator) -> str | None:
    objs = list(scene.objects)
    if label == "entailment":
        if rng.random() < 0.3:
            o = _pick(rng, objs)
            np_ = _unique_np(scene, o, ("shape",))
            if np_ is None:
                return None
            attr = o.color if np_.size is not None or rng.random() < 0.6 else o.size
            return f"the {np_.words()} is {attr}."
        rels = true_relations(scene)
        if not rels:
            return None
        a, rel, b = _pick(rng, rels)
    elif label == "neutral":
        pairs = [
            (a, b) for a in objs for b in objs if a.id != b.id and scene.relation(a, b) is None
        ]
        if not pairs:
            return None
        a, b = _pick(rng, pairs)
        rel = _pick(rng, RELATIONS)
    else:
        r = rng.random()
        rels = true_relations(scene)
        if r < 0.3 and rels:  # converse / swapped relation
            a, rel, b = _pick(rng, rels)
            if rng.random() < 0.5:
                a, b = b, a
            else:
                rel = CONVERSE[rel]
        elif r < 0.5:  # wrong attribute
            o = _pick(rng, objs)
            np_ = _unique_np(scene, o, ("shape",))
            if np_ is None:
                return None
            wrong = _pick(rng, [c for c in COLORS if c != o.color])
            return f"the {np_.words()} is {wrong}."
        elif r < 0.75 and rels:  # absent object
            a, rel, b = _pick(rng, rels)
            present = {(o.color, o.shape) for o in objs}
            absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
            c, s = _pick(rng, absent)
            na = _unique_np(scene, a, ("shape", "color"))
            if na is None:
                return None
            return f"the {na.words()} is {rel} the {c} {s}."
        else:  # a different relation than the one that holds
            if not rels:
                return None
            a, rel0, b = _pick(rng, rels)
            rel = _pick(rng, [x for x in RELATIONS if x != rel0])
    na = _unique_np(scene, a, ("shape", "color"))
    nb = _unique_np(scene, b, ("shape", "color"))
    if na is None or nb is None:
        return None
    return f"the {na.words()} is {rel} the {nb.words()}."


def make_ve(facts: Mapping[int, SceneFacts], rng: np.random.Generator) -> dict[str, Any]:
    """Two statements per image with labels by :func:`logic.entailment_label`, the rarest label
    drawn first so that the three labels stay balanced."""
    items = []
    counts: Counter = Counter()
    for image_id in sorted(facts):
        scene = facts[image_id]
        for _ in range(2):
            made = None
            for label in _rarest(counts, VE_LABELS, rng):
                for _ in range(_MAX_TRIES):
                    st = _ve_candidate(label, scene, rng)
                    if st is not None and entailment_label(st, scene) == label:
                        made = (st, label)
                        break
                if made:
                    break
            if made is None:
                continue
            counts[made[1]] += 1
            items.append(
                {
                    "id": len(items),
                    "image_id": int(image_id),
                    "statement": made[0],
                    "label": made[1],
                }
            )
    return {"labels": list(VE_LABELS), "items": items}


# ---------------------------------------------------------------------------------------------
# NLVR2-style pairs
# ---------------------------------------------------------------------------------------------


def _inner_statement(left: SceneFacts, right: SceneFacts, rng: np.random.Generator) -> str:
    """A statement about one image, drawn from objects of either image (so that it is true
    in some images and false in others)."""
    pool = list(left.objects) + list(right.objects)
    r = rng.random()
    if r < 0.35:
        o = _pick(rng, pool)
        np_ = NounPhrase(o.shape, o.color if rng.random() < 0.7 else None)
        return f"there is {article(np_.words())} {np_.words()}"
    if r < 0.6:
        scene = left if rng.random() < 0.5 else right
        rels = true_relations(scene)
        a, rel, b = (
            _pick(rng, rels)
            if rels
            else (_pick(rng, pool), _pick(rng, RELATIONS), _pick(rng, pool))
        )
        if rng.random() < 0.3:
            rel = CONVERSE[rel]
        na, nb = NounPhrase(a.shape, a.color), NounPhrase(b.shape, b.color)
        return (
            f"there is {article(na.words())} {na.words()} {rel} {article(nb.words())} {nb.words()}"
        )
    if r < 0.8:
        shape = _pick(rng, SHAPES)
        n = int(rng.integers(0, 4))
        np_ = NounPhrase(shape)
        if n == 1:
            return f"there is one {np_.words()}"
        return f"there are {NUMBER_WORDS[n]} {np_.words(plural=True)}"
    stuff = _pick(rng, STUFF)
    return f"there is {stuff} in the background"


def _pair_candidate(left: SceneFacts, right: SceneFacts, rng: np.random.Generator) -> str:
    if rng.random() < 0.2:
        np_ = (
            NounPhrase(_pick(rng, SHAPES))
            if rng.random() < 0.5
            else NounPhrase(None, _pick(rng, COLORS))
        )
        more = "more" if rng.random() < 0.5 else "fewer"
        return f"the left image has {more} {np_.words(plural=True)} than the right image."
    q = _pick(rng, PAIR_QUANTIFIERS)
    return f"{q}, {_inner_statement(left, right, rng)}."


def make_nlvr2(
    facts: Mapping[int, SceneFacts], rng: np.random.Generator, pairs_per_image: int = 1
) -> dict[str, Any]:
    """``pairs_per_image`` pairs per image (the image on the left, a random other image of the
    split on the right, no (left, right) pair twice when the split allows it); the truth value
    drawn rarest-first so that true/false stay balanced.

    Pairs are made in rounds of one per image; the first round is what ``pairs_per_image=1``
    gives, so more pairs extend a task file without changing its first items.
    """
    if int(pairs_per_image) < 1:
        raise ConfigError(f"pairs_per_image must be >= 1, got {pairs_per_image}")
    ids = sorted(facts)
    items = []
    counts: Counter = Counter()
    if len(ids) < 2:
        return {"items": items}
    seen: set[tuple[int, int]] = set()
    for _ in range(int(pairs_per_image)):
        for i, left_id in enumerate(ids):
            for _ in range(_MAX_TRIES):
                j = int(rng.integers(len(ids) - 1))
                right_id = ids[j if j < i else j + 1]
                if (left_id, right_id) not in seen:
                    break
            seen.add((left_id, right_id))
            left, right = facts[left_id], facts[right_id]
            made = None
            for want in _rarest(counts, ("true", "false"), rng):
                for _ in range(_MAX_TRIES):
                    st = _pair_candidate(left, right, rng)
                    if evaluate_pair(st, left, right) == (want == "true"):
                        made = (st, want == "true")
                        break
                if made:
                    break
            if made is None:
                continue
            counts["true" if made[1] else "false"] += 1
            items.append(
                {
                    "id": len(items),
                    "left_image_id": int(left_id),
                    "right_image_id": int(right_id),
                    "statement": made[0],
                    "label": made[1],
                    "type": pair_statement_kind(made[0]),
                }
            )
    return {"items": items}


TASK_MAKERS: dict[str, Callable[[Mapping[int, SceneFacts], np.random.Generator], dict]] = {
    "vqa": make_vqa,
    "ve": make_ve,
    "nlvr2": make_nlvr2,
}


def write_task_files(
    root: str | os.PathLike[str],
    split: str,
    facts: Mapping[int, SceneFacts],
    seed: int,
    nlvr2_pairs_per_image: int = 1,
    rng_split: str | None = None,
) -> dict[str, Path]:
    """Write ``annotations/{vqa,ve,nlvr2}_{split}.json`` for the scenes ``facts``
    (``nlvr2_pairs_per_image``: :func:`make_nlvr2`'s ``pairs_per_image``; ``rng_split``: the
    split whose random streams draw the items, default ``split``)."""
    from neurogshn.data.relational.streams import split_rng

    makers = TASK_MAKERS | {"nlvr2": partial(make_nlvr2, pairs_per_image=nlvr2_pairs_per_image)}
    out = {}
    for k, (name, maker) in enumerate(makers.items()):
        data = maker(facts, split_rng(seed, rng_split or split, k))
        path = Path(root) / "annotations" / f"{name}_{split}.json"
        write_json_atomic(path, data, indent=None)
        out[name] = path
    return out
