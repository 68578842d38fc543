"""Task-file loaders (neurogshn.data.tasks) and the scene logic on hand-built scenes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.relational.captions import HARD_NEGATIVE_KINDS
from neurogshn.data.relational.logic import (
    SceneFacts,
    SceneObject,
    StatementError,
    answer,
    entailment_label,
    evaluate,
    evaluate_pair,
    parse_question,
)
from neurogshn.data.tasks import (
    HardNegativeItem,
    NLVR2Item,
    VEItem,
    VQAQuestion,
    item_negatives,
    load_hard_negatives,
    load_task,
    task_path,
)
from neurogshn.errors import DataError


def test_loaders_on_generated_files(scenes_root: Path) -> None:
    ids = CocoPanopticDataset(scenes_root, "val").image_ids
    for task, cls in (
        ("vqa", VQAQuestion),
        ("ve", VEItem),
        ("nlvr2", NLVR2Item),
        ("hard_negatives", HardNegativeItem),
    ):
        tf = load_task(scenes_root, task, "val", image_ids=ids, strict=True)
        assert len(tf) > 0 and all(isinstance(i, cls) for i in tf) and tf.skipped == []
    hn = load_hard_negatives(task_path(scenes_root, "hard_negatives", "val"))
    assert hn.labels == list(HARD_NEGATIVE_KINDS)  # the kinds the generator writes
    assert set(hn.items[0].negatives()) <= set(HARD_NEGATIVE_KINDS)
    assert all("size_flip" in item.negatives() for item in hn.items)
    assert all(item.caption_id is not None for item in hn.items)
    assert load_task(scenes_root, "vqa", "val").labels[-2:] == ["yes", "no"]
    # NLVR2 items carry their statement form (the per-form reporting group)
    nlvr2 = load_task(scenes_root, "nlvr2", "val", strict=True)
    assert {item.type for item in nlvr2} <= {
        "both",
        "exactly_one",
        "neither",
        "left",
        "right",
        "compare",
    }
    assert all(item.type is not None for item in nlvr2)


def test_hard_negative_kinds_come_from_the_file(tmp_path: Path) -> None:
    """Every field of an item but image_id, caption_index, caption and caption_id is a kind
    of negative: a file with fewer kinds (or a user's own kind) loads, and ``labels`` lists
    the kinds found."""
    item = {
        "image_id": 1,
        "caption_index": 0,
        "caption": "the red circle is left of the blue square.",
        "relation_swap": "the blue square is left of the red circle.",
        "attribute_swap": None,
        "object_replace": None,
    }
    path = tmp_path / "hard_negatives_val.json"
    path.write_text(json.dumps({"version": 1, "items": [item]}))
    tf = load_hard_negatives(path, strict=True)
    assert tf.skipped == [] and tf.labels == ["relation_swap", "attribute_swap", "object_replace"]
    got = tf.items[0]
    assert got.caption_id is None and "size_flip" not in got.kinds
    assert got.negatives() == {"relation_swap": item["relation_swap"]}
    assert item_negatives(got) == item_negatives(item) == got.negatives()
    path.write_text(json.dumps({"version": 1, "items": [{**item, "size_flip": 3}]}))
    with pytest.raises(DataError, match="size_flip"):
        load_hard_negatives(path, strict=True)
    own = {**item, "caption_id": 7, "negation": "the red circle is not left of the square."}
    path.write_text(json.dumps({"version": 2, "items": [own]}))
    tf = load_hard_negatives(path, strict=True)
    assert tf.items[0].caption_id == 7 and tf.labels[-1] == "negation"
    assert tf.items[0].negatives() == {
        "relation_swap": item["relation_swap"],
        "negation": own["negation"],
    }
    path.write_text(json.dumps({"version": 1, "items": [{**item, "count_flip": ["four"]}]}))
    with pytest.raises(DataError, match="count_flip"):
        load_hard_negatives(path, strict=True)


def test_unknown_image_ids(scenes_root: Path) -> None:
    keep = CocoPanopticDataset(scenes_root, "val").image_ids[:3]
    full = load_task(scenes_root, "nlvr2", "val")
    part = load_task(scenes_root, "nlvr2", "val", image_ids=keep)
    assert len(part) < len(full) and len(part) + len(part.skipped) == len(full)
    assert "not in the data set" in part.skipped[0].reason
    with pytest.raises(DataError, match="not in the data set"):
        load_task(scenes_root, "nlvr2", "val", image_ids=keep, strict=True)


def _write(tmp_path: Path, name: str, obj) -> Path:
    (tmp_path / "annotations").mkdir(exist_ok=True)
    path = tmp_path / "annotations" / f"{name}_val.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_malformed_task_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no vqa file"):
        load_task(tmp_path, "vqa", "val")
    path = _write(tmp_path, "vqa", '{"answers": ["yes"],\n "questions": [}')
    with pytest.raises(DataError, match="line 2, column") as e:
        load_task(tmp_path, "vqa", "val")
    assert e.value.path == str(path)
    _write(tmp_path, "ve", {"items": []})
    with pytest.raises(DataError, match='"labels"'):
        load_task(tmp_path, "ve", "val")
    _write(tmp_path, "nlvr2", [1])
    with pytest.raises(DataError, match="top level"):
        load_task(tmp_path, "nlvr2", "val")
    with pytest.raises(ValueError, match="unknown task"):
        load_task(tmp_path, "gqa", "val")


def test_bad_items_lenient_and_strict(tmp_path: Path) -> None:
    good = {
        "question_id": 1,
        "image_id": 5,
        "question": "is there a red circle?",
        "answer": "yes",
        "type": "existence",
    }
    items = [
        good,
        {**good, "answer": "maybe"},
        {**good, "type": "weather"},
        {k: v for k, v in good.items() if k != "image_id"},
        {**good, "image_id": "x"},
        "not an object",
    ]
    _write(tmp_path, "vqa", {"answers": ["yes", "no"], "questions": items})
    tf = load_task(tmp_path, "vqa", "val")
    # question types are open strings: "weather" is as good as "existence"
    assert len(tf) == 2 and len(tf.skipped) == 4 and tf.items[1].type == "weather"
    text = " ".join(s.reason for s in tf.skipped)
    for part in (
        "'maybe'",
        "missing field 'image_id'",
        "field 'image_id'",
        "expected an object",
    ):
        assert part in text
    with pytest.raises(DataError, match="maybe"):
        load_task(tmp_path, "vqa", "val", strict=True)
    _write(
        tmp_path,
        "nlvr2",
        {
            "items": [
                {
                    "id": 0,
                    "left_image_id": 1,
                    "right_image_id": 2,
                    "statement": "x",
                    "label": "true",
                }
            ]
        },
    )
    with pytest.raises(DataError, match="true or false"):
        load_task(tmp_path, "nlvr2", "val", strict=True)
    pair = {"id": 0, "left_image_id": 1, "right_image_id": 2, "statement": "x", "label": True}
    _write(tmp_path, "nlvr2", {"items": [pair, {**pair, "id": 1, "type": "both"}]})
    assert [item.type for item in load_task(tmp_path, "nlvr2", "val", strict=True)] == [
        None,
        "both",
    ]
    _write(tmp_path, "nlvr2", {"items": [{**pair, "type": 3}]})
    with pytest.raises(DataError, match="type"):
        load_task(tmp_path, "nlvr2", "val", strict=True)
    _write(
        tmp_path,
        "ve",
        {
            "labels": ["entailment"],
            "items": [{"id": 0, "image_id": 1, "statement": "x", "label": "neutral"}],
        },
    )
    assert load_task(tmp_path, "ve", "val").skipped[0].reason.startswith("item 0: label")


# ---------------------------------------------------------------------------------------------
# Logic on hand-built scenes
# ---------------------------------------------------------------------------------------------


def _scene() -> SceneFacts:
    return SceneFacts(
        (
            SceneObject(1, "circle", "red", "large", 0.2, 0.5),
            SceneObject(2, "square", "blue", "small", 0.6, 0.55),
            SceneObject(3, "circle", "blue", "small", 0.62, 0.2),  # above the square
            SceneObject(4, "cross", "green", "small", 0.68, 0.6),  # too close to the square
        ),
        ("sky",),
    )


@pytest.mark.parametrize(
    ("text", "truth"),
    [
        ("the red circle is left of the blue square.", True),
        ("the blue square is left of the red circle.", False),
        ("the blue square is right of the red circle.", True),
        ("left of the blue square there is a red circle.", True),
        ("there is a large red circle left of the small blue square.", True),
        ("the small red circle is left of the blue square.", False),  # no small red circle
        ("the circle is left of the blue square.", False),  # two circles: not unique
        ("a circle is left of a square.", True),
        ("the blue circle is above the blue square.", True),
        ("the blue circle is left of the blue square.", False),  # vertical dominates
        ("the green cross is right of the blue square.", False),  # within the margin
        ("there are two circles, and the red circle is left of the green cross.", True),
        ("there are three circles.", False),
        ("there is one square.", True),
        ("there is no purple diamond.", True),
        ("there is sky in the background.", True),
        ("there is grass in the background.", False),
        ("the red object is large.", True),
        ("the square is blue.", True),
        ("the square is red.", False),
    ],
)
def test_evaluate(text: str, truth: bool) -> None:
    assert evaluate(text, _scene()) is truth


@pytest.mark.parametrize(
    "text",
    [
        "the red circle is near the blue square.",
        "the circle is purple-ish.",
        "there is the red circle.",
        "the red circle is left of the blue square and",
    ],
)
def test_unparseable(text: str) -> None:
    with pytest.raises(StatementError, match="cannot parse"):
        evaluate(text, _scene())


def test_questions_and_entailment() -> None:
    s = _scene()
    assert answer("what color is the square?", s) == "blue"
    assert answer("what shape is the red object?", s) == "circle"
    assert answer("what color is the circle?", s) is None  # ambiguous
    assert answer("how many blue objects are there?", s) == "2"
    assert answer("is there a green cross?", s) == "yes"
    assert answer("is the blue circle above the blue square?", s) == "yes"
    assert answer("is the blue square above the blue circle?", s) == "no"
    assert parse_question("how many crosses are there?").np.shape == "cross"
    assert entailment_label("the red circle is left of the blue square.", s) == "entailment"
    assert entailment_label("the blue square is left of the red circle.", s) == "contradiction"
    assert entailment_label("the green cross is right of the blue square.", s) == "neutral"
    assert entailment_label("the yellow cross is right of the blue square.", s) == "contradiction"


def test_pair_statements() -> None:
    a, b = _scene(), SceneFacts((SceneObject(9, "diamond", "white", "large", 0.5, 0.5),), ())
    assert evaluate_pair("in exactly one image, there is a red circle.", a, b)
    assert not evaluate_pair("in both images, there is a red circle.", a, b)
    assert evaluate_pair("in neither image, there is a yellow square.", a, b)
    assert evaluate_pair("in the right image, there is one diamond.", a, b)
    assert evaluate_pair("the left image has more circles than the right image.", a, b)
    assert not evaluate_pair("the left image has fewer objects than the right image.", a, b)
    with pytest.raises(StatementError):
        evaluate_pair("in most images, there is a red circle.", a, b)


def test_pair_statement_kind() -> None:
    from neurogshn.data.relational.logic import pair_statement_kind

    assert pair_statement_kind("in both images, there is a red circle.") == "both"
    assert pair_statement_kind("in exactly one image, there are two squares.") == "exactly_one"
    assert pair_statement_kind("in neither image, there is sand in the background.") == "neither"
    assert pair_statement_kind("in the right image, there is one diamond.") == "right"
    assert pair_statement_kind("the left image has fewer red objects than the right image.") == (
        "compare"
    )
    # real NLVR2 sentences are outside the grammar: no group, no error
    assert pair_statement_kind("One image shows exactly two dogs lying on grass.") is None
