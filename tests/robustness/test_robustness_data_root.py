"""Only `neurogshn data scenes` writes a data set, and never over a user's files by surprise."""

from __future__ import annotations

import hashlib

import pytest

from neurogshn.cli import main
from neurogshn.errors import DataError
from neurogshn.jobs.pretrain import ensure_scenes
from neurogshn.training.config import TrainConfig
from neurogshn.training.distributed import DistInfo


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def users_root(tmp_path):
    """A user's data root without annotations/: their images must survive."""
    root = tmp_path / "mydata"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "000000000000.png").write_bytes(b"my own image")
    (root / "notes.txt").write_text("lab notes")
    return root


def test_pretrain_does_not_generate_into_a_users_root(users_root):
    cfg = TrainConfig()
    cfg.data.root = str(users_root)
    cfg.data.generate_if_missing = True
    before = _snapshot(users_root)
    with pytest.raises(DataError) as exc:
        ensure_scenes(cfg, DistInfo(), log=lambda *a, **k: None)
    assert str(users_root) in str(exc.value) and "not empty" in str(exc.value)
    assert _snapshot(users_root) == before


def test_data_scenes_refuses_a_non_empty_target(users_root, capsys):
    before = _snapshot(users_root)
    code = main(
        [
            "data",
            "scenes",
            "--out",
            str(users_root),
            "--train",
            "2",
            "--val",
            "1",
            "--test",
            "1",
            "--image-size",
            "64",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(users_root) in err and "--overwrite" in err
    assert _snapshot(users_root) == before


def test_a_symlink_out_of_the_data_root_is_refused(tmp_path):
    from neurogshn.data.coco import safe_join

    root = tmp_path / "root"
    images = root / "images" / "train"
    images.mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    (images / "evil.png").symlink_to(secret)
    (images / "fine.png").write_bytes(b"png")
    with pytest.raises(ValueError, match="symbolic link"):
        safe_join(images, "evil.png", root)
    assert safe_join(images, "fine.png", root) == images / "fine.png"
    # a linked folder (images on another disk) is the user's choice and is followed
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a.png").write_bytes(b"png")
    (root / "images" / "val").symlink_to(disk, target_is_directory=True)
    assert safe_join(root / "images" / "val", "a.png", root) == root / "images" / "val" / "a.png"


def test_dataset_skips_a_linked_image_outside_the_root_by_name(tmp_path):
    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.data.relational.scenes import generate_scenes

    root = tmp_path / "scenes"
    generate_scenes(root, splits={"train": 2, "val": 2, "test": 2}, image_size=64, progress=False)
    target = tmp_path / "outside.png"
    first = sorted((root / "images" / "val").iterdir())[0]
    target.write_bytes(first.read_bytes())
    first.unlink()
    first.symlink_to(target)
    ds = CocoPanopticDataset(root, "val")
    assert len(ds) == 1
    assert any("symbolic link" in s.reason for s in ds.skipped)
