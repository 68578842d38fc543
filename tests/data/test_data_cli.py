"""``neurogshn data scenes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert "wrote 6 images" in text and "images/s" in text
    assert len(list((out / "images" / "test").glob("*.png"))) == 2
    manifest = json.loads((out / "annotations" / "scenes.json").read_text())
    assert manifest["seed"] == 2 and manifest["splits"] == {"train": 3, "val": 1, "test": 2}


def test_data_scenes_cli_errors(tmp_path: Path, capsys) -> None:
    assert main(["data", "scenes", "--out", str(tmp_path), "--image-size", "8"]) == 2
    assert "image_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "scenes", "--help"])
    assert "--strict does not apply" in capsys.readouterr().out
