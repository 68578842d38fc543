"""Scene facts rebuilt from a data set's files, and the truth of captions on them (tests/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.relational.facts import load_scene_facts, scene_facts_problem, statement_problem
from neurogshn.data.relational.logic import StatementError, evaluate, truth_matrix
from neurogshn.data.relational.scenes import image_id_for, make_scene
from neurogshn.errors import DataError


def test_facts_from_files_give_the_generator_truth(scenes_root: Path) -> None:
    """Facts rebuilt from the files judge every caption (by its logical form) as the
    generator's own facts do."""
    manifest = json.loads((scenes_root / "annotations" / "scenes.json").read_text())
    seed, size, n = manifest["seed"], manifest["image_size"], manifest["splits"]["test"]
    ds = CocoPanopticDataset(scenes_root, "test", strict=True)
    ids = [image_id_for("test", i) for i in range(n)]
    facts = load_scene_facts(ds, ids)
    assert list(facts) == ids
    generated = [make_scene(seed, "test", i, size).facts for i in range(n)]
    path = scenes_root / "annotations" / "logical_forms_test.json"
    forms = json.loads(path.read_text())["forms"]
    texts = [forms[c] for i in ids for c in ds.captions[i]]
    owner = [j for j, i in enumerate(ids) for _ in ds.captions[i]]
    truth = truth_matrix(texts, [facts[i] for i in ids])
    assert truth.shape == (len(texts), len(ids)) and truth.dtype == bool
    assert truth[np.arange(len(texts)), owner].all()  # every caption true of its own image
    by_hand = np.array([[evaluate(t, g) for g in generated] for t in texts])
    np.testing.assert_array_equal(truth, by_hand)
    assert statement_problem(texts) is None


def _copy_with_panoptic(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    path = dst / "annotations" / "panoptic_test.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return dst


def test_data_not_in_the_vocabulary(scenes_root: Path, tmp_path: Path) -> None:
    def drop_attributes(doc: dict) -> None:
        for ann in doc["annotations"]:
            for seg in ann["segments_info"]:
                seg.pop("attributes", None)

    def rename_category(doc: dict) -> None:
        doc["categories"][0]["name"] = "person"

    root = _copy_with_panoptic(scenes_root, tmp_path / "no_attr", drop_attributes)
    ds = CocoPanopticDataset(root, "test")
    ids = sorted(ds.captions)
    problem = scene_facts_problem(ds, ids)
    assert problem is not None and "no color/size attributes" in problem
    assert f"image {ids[0]}" in problem
    with pytest.raises(DataError, match="no color/size attributes") as err:
        load_scene_facts(ds, ids)
    assert str(root) in str(err.value)

    root = _copy_with_panoptic(scenes_root, tmp_path / "coco_like", rename_category)
    ds = CocoPanopticDataset(root, "test")
    problem = scene_facts_problem(ds, sorted(ds.captions))
    assert problem is not None and "'person'" in problem and "vocabulary" in problem


def test_captions_not_in_the_language() -> None:
    problem = statement_problem(["the red circle is left of the blue square.", "a man rides"])
    assert problem is not None and "a man rides" in problem
    with pytest.raises(StatementError, match="a man rides"):
        truth_matrix(["a man rides a horse"], [])


def test_why_false_by_hand() -> None:
    from neurogshn.data.relational.logic import FALSE_REASONS, SceneFacts, SceneObject, why_false

    red_circle = SceneObject(1, "circle", "red", "small", 0.2, 0.5)
    blue_square = SceneObject(2, "square", "blue", "large", 0.8, 0.5)
    scene = SceneFacts((red_circle, blue_square))
    cases = {
        "the red circle is left of the blue square.": None,
        "the blue circle is left of the red square.": "binding",
        "there is a blue circle.": "binding",
        "the large red circle is left of the blue square.": "size",
        "the green circle is left of the blue square.": "object",
        "there is no red circle.": "object",
        "the blue square is left of the red circle.": "relation",
        "the red circle is above the blue square.": "relation",
        "there are three objects.": "count",
        "the red circle is blue.": "attribute",
        "there is sky in the background.": "stuff",
        "the red circle is left of the blue square, and there are five objects.": "count",
    }
    for text, reason in cases.items():
        assert why_false(text, scene) == reason, text
        assert reason is None or reason in FALSE_REASONS
    two = SceneFacts((red_circle, blue_square, SceneObject(3, "circle", "red", "small", 0.1, 0.1)))
    assert why_false("the red circle is left of the blue square.", two) == "not_unique"
    assert why_false("a red circle is left of the blue square.", two) is None
