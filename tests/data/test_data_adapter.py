"""Benchmark diagnostics behind the manifest's declaration (neurogshn.data.diagnostics and
neurogshn.data.relational.adapter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neurogshn.data.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, benchmark, generate
from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.diagnostics import (
    DatasetDiagnostics,
    declared_benchmark,
    diagnostics_for,
)
from neurogshn.data.relational.adapter import RelationalDiagnostics
from neurogshn.data.relational.logic import FALSE_REASONS
from neurogshn.data.relational.scenes import BENCHMARK_NAME
from neurogshn.data.tasks import item_negatives


def _coco_copy(src: Path, dst: Path, split: str = "test") -> Path:
    """The split's images, masks and captions only: a COCO data set that declares nothing."""
    (dst / "annotations").mkdir(parents=True)
    shutil.copytree(src / "images" / split, dst / "images" / split)
    shutil.copytree(src / f"panoptic_{split}", dst / f"panoptic_{split}")
    for name in (f"panoptic_{split}.json", f"captions_{split}.json"):
        shutil.copy(src / "annotations" / name, dst / "annotations" / name)
    return dst


def test_undeclared_data_sets_get_no_diagnostics(scenes_root: Path, tmp_path: Path) -> None:
    """A COCO data set without the manifest, with another benchmark's name or with a broken
    manifest declares nothing: no diagnostics, whatever its captions say."""
    root = _coco_copy(scenes_root, tmp_path / "coco")
    assert declared_benchmark(root) is None and diagnostics_for(root, "test") is None
    manifest = root / "annotations" / "scenes.json"
    for text in ('{"benchmark": "someone else\'s scenes"}', "[1, 2]", "{not json", '{"seed": 0}'):
        manifest.write_text(text)
        assert diagnostics_for(root, "test") is None, text
    manifest.write_text(json.dumps({"benchmark": BENCHMARK_NAME}))
    assert isinstance(diagnostics_for(root, "test"), RelationalDiagnostics)


def test_registry() -> None:
    assert BENCHMARK_NAME == DEFAULT_BENCHMARK and BENCHMARK_NAME in BENCHMARKS
    with pytest.raises(KeyError, match="known"):
        benchmark("imagenet")


def test_generated_scenes_declare_the_benchmark(scenes_root: Path) -> None:
    manifest = json.loads((scenes_root / "annotations" / "scenes.json").read_text())
    assert manifest["benchmark"] == BENCHMARK_NAME == "neurogshn relational scenes"
    coco = CocoPanopticDataset(scenes_root, "test")
    diag = diagnostics_for(scenes_root, "test", dataset=coco)
    assert isinstance(diag, RelationalDiagnostics) and isinstance(diag, DatasetDiagnostics)
    assert diag.dataset is coco and diag.reasons == FALSE_REASONS and diag.name == BENCHMARK_NAME


def _check_truth(root: Path, split: str) -> None:
    coco = CocoPanopticDataset(root, split)
    diag = diagnostics_for(root, split, dataset=coco)
    assert diag is not None
    ids = sorted(coco.captions)
    texts = [c for i in ids for c in coco.captions[i]]
    owner = np.array([j for j, i in enumerate(ids) for _ in coco.captions[i]])
    assert diag.problem(texts, ids) is None
    truth = diag.truth_matrix(texts, ids)
    assert truth.shape == (len(texts), len(ids)) and truth.dtype == bool
    assert truth[np.arange(len(texts)), owner].all()  # every caption true of its own image
    assert not truth.all()  # and not of everything
    rows, cols = np.nonzero(~truth)
    for row, col in list(zip(rows, cols, strict=True))[:20]:
        assert diag.why_false(texts[row], ids[col]) in FALSE_REASONS
    assert diag.why_false(texts[0], ids[owner[0]]) is None
    # every hard negative is false of its image, judged through the logical forms too
    path = root / "annotations" / f"hard_negatives_{split}.json"
    for item in json.loads(path.read_text())["items"][:10]:
        negatives = list(item_negatives(item).values())
        assert negatives
        assert not diag.truth_matrix(negatives, [item["image_id"]]).any()


def test_truth_matrix_marks_each_caption_true_of_its_own_image(scenes_root: Path) -> None:
    _check_truth(scenes_root, "test")


def test_truth_on_held_out_wording(tmp_path: Path) -> None:
    """Captions worded by held-out families (outside the grammar) are judged through the
    split's logical forms, as are test_seen's in the training wording."""
    root = generate(
        DEFAULT_BENCHMARK,
        tmp_path / "data",
        seed=3,
        splits={"train": 1, "test": 4},
        image_size=48,
        progress=False,
        heldout_phrasings=True,
    )
    for split in ("test", "test_seen"):
        _check_truth(root, split)


def test_problems_are_reported(scenes_root: Path, tmp_path: Path) -> None:
    """A caption outside the grammar (and not in the logical forms) or an image without the
    attributes the scene logic reads: ``problem`` says which, before anything is judged."""
    coco = CocoPanopticDataset(scenes_root, "test")
    diag = RelationalDiagnostics(scenes_root, "test", dataset=coco)
    ids = sorted(coco.captions)[:2]
    problem = diag.problem(["two dogs play in the snow"], ids)
    assert problem is not None and "two dogs" in problem
    # a text written in the grammar needs no logical form
    assert diag.problem(["there is a red circle."], ids) is None
    assert diag.logical_form("there is a red circle.") == "there is a red circle."

    root = tmp_path / "data"
    shutil.copytree(scenes_root, root)
    path = root / "annotations" / "panoptic_test.json"
    doc = json.loads(path.read_text())
    for ann in doc["annotations"]:
        for seg in ann["segments_info"]:
            seg.pop("attributes", None)
    path.write_text(json.dumps(doc))
    diag = diagnostics_for(root, "test")
    assert diag is not None
    problem = diag.problem(coco.captions[ids[0]], ids)
    assert problem is not None and "no color/size attributes" in problem


def test_logical_forms_file_must_be_well_formed(scenes_root: Path, tmp_path: Path) -> None:
    from neurogshn.errors import DataError

    root = _coco_copy(scenes_root, tmp_path / "coco")
    (root / "annotations" / "logical_forms_test.json").write_text('{"forms": [1]}')
    with pytest.raises(DataError, match="logical form"):
        RelationalDiagnostics(root, "test")
