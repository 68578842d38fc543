"""``neurogshn data scenes``."""

from __future__ import annotations

import json
from pathlib import Path

from neurogshn.cli import main


def test_data_scenes_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "scenes"
    code = main(
        [
            "data",
            "scenes",
            "--out",
            str(out),
            "--seed",
            "2",
            "--train",
            "3",
            "--val",
            "1",
            "--test",
            "2",
            "--image-size",
            "40",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    # held-out phrasings by default: test_seen shows the test scenes in training wording
    assert "wrote 8 images" in text and "images/s" in text and "test_seen 2" in text
    assert "test_seen: phrasing families plain" in text and "(the scenes of test)" in text
    assert len(list((out / "images" / "test").glob("*.png"))) == 2
    manifest = json.loads((out / "annotations" / "scenes.json").read_text())
    assert manifest["seed"] == 2 and manifest["heldout_phrasings"] is True
    assert manifest["splits"] == {"train": 3, "val": 1, "test": 2, "test_seen": 2}
    assert manifest["benchmark"] == "neurogshn relational scenes"
    # a non-empty directory is refused unless --overwrite; one wording on request
    args = ["data", "scenes", "--out", str(out), "--train", "2", "--val", "0", "--test", "1"]
    args += ["--image-size", "40", "--no-progress", "--no-heldout-phrasings"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "wrote 3 images (train 2, val 0, test 1)" in text and "test_seen" not in text
    manifest = json.loads((out / "annotations" / "scenes.json").read_text())
    assert manifest["heldout_phrasings"] is False and "test_seen" not in manifest["splits"]


def test_data_scenes_cli_errors(tmp_path: Path, capsys) -> None:
    assert main(["data", "scenes", "--out", str(tmp_path), "--image-size", "8"]) == 2
    assert "image_size" in capsys.readouterr().err
    assert main(["data", "scenes", "--help"]) == 0
    assert "--strict does not apply" in capsys.readouterr().out
