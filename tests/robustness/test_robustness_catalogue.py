"""The bad-input catalogue through the command line: damaged images, panoptic annotations that
disagree with their PNGs, malformed and wrong-typed JSON, paths that escape the data root,
empty splits, and damaged checkpoints. Each case drives ``neurogshn`` (``main([...])``) on a
damaged copy of a small generated set and checks the exit code, that the message names the
file (or field) and the problem, that a lenient run keeps every good record, and that nothing
outside the command's output changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from neurogshn.cli import main

CACHE = ".neurogshn_cache"
SPLIT = "val"


def _annotation(root: Path, name: str) -> tuple[Path, dict]:
    path = root / "annotations" / name
    return path, json.loads(path.read_text())


def _second(root: Path, folder: str) -> Path:
    return sorted((root / folder).glob("*.png"))[1]


# Each damage returns (text the message must name, words of the problem, what a lenient run
# loses: ONE_IMAGE, NO_IMAGE (kept, the bad part dropped and named) or WHOLE_FILE (refused)).
ONE_IMAGE, NO_IMAGE, WHOLE_FILE = 1, 0, None
Damage = Callable[[Path], tuple[str, str, int | None]]


def junk_image(root: Path) -> tuple[str, str, int | None]:
    path = _second(root, f"images/{SPLIT}")
    path.write_bytes(b"this is not a png")
    return path.name, "cannot decode image", ONE_IMAGE


def truncated_image(root: Path) -> tuple[str, str, int | None]:
    path = _second(root, f"images/{SPLIT}")
    path.write_bytes(path.read_bytes()[:200])
    return path.name, "truncated", ONE_IMAGE


def resized_image(root: Path) -> tuple[str, str, int | None]:
    path = _second(root, f"images/{SPLIT}")
    Image.open(path).resize((40, 40)).save(path)
    return path.name, "is 40×40", ONE_IMAGE


def missing_panoptic_png(root: Path) -> tuple[str, str, int | None]:
    path = _second(root, f"panoptic_{SPLIT}")
    path.unlink()
    return path.name, "panoptic PNG not found", ONE_IMAGE


def png_segment_not_in_segments_info(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"panoptic_{SPLIT}.json")
    ann = data["annotations"][1]
    ann["segments_info"] = ann["segments_info"][1:]
    path.write_text(json.dumps(data))
    return ann["file_name"], "PNG are not in segments_info", NO_IMAGE


def segments_info_id_not_in_png(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"panoptic_{SPLIT}.json")
    ann = data["annotations"][1]
    ann["segments_info"].append(dict(ann["segments_info"][0], id=123456))
    path.write_text(json.dumps(data))
    return ann["file_name"], "segment 123456 is in segments_info but not in the", NO_IMAGE


def malformed_captions_json(root: Path) -> tuple[str, str, int | None]:
    path = root / "annotations" / f"captions_{SPLIT}.json"
    path.write_text(path.read_text()[:300])
    return path.name, "malformed JSON", WHOLE_FILE


def malformed_panoptic_json(root: Path) -> tuple[str, str, int | None]:
    path = root / "annotations" / f"panoptic_{SPLIT}.json"
    path.write_text(path.read_text()[:300])
    return path.name, "malformed JSON", WHOLE_FILE


def captions_wrong_structure(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"captions_{SPLIT}.json")
    data["annotations"] = {"not": "a list"}
    path.write_text(json.dumps(data))
    return path.name, '"annotations" list', WHOLE_FILE


def image_id_wrong_type(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"panoptic_{SPLIT}.json")
    data["annotations"][1]["image_id"] = "seven"
    path.write_text(json.dumps(data))
    return f"panoptic_{SPLIT}.json", "integer image_id", ONE_IMAGE


def image_path_escapes_root(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"panoptic_{SPLIT}.json")
    data["images"][1]["file_name"] = "../../../../etc/hostname"
    path.write_text(json.dumps(data))
    return "../../../../etc/hostname", "escapes the data root", ONE_IMAGE


def panoptic_path_escapes_root(root: Path) -> tuple[str, str, int | None]:
    path, data = _annotation(root, f"panoptic_{SPLIT}.json")
    data["annotations"][1]["file_name"] = "../../../../etc/hostname"
    path.write_text(json.dumps(data))
    return "../../../../etc/hostname", "escapes the data root", ONE_IMAGE


def empty_split(root: Path) -> tuple[str, str, int | None]:
    for name in (f"panoptic_{SPLIT}.json", f"captions_{SPLIT}.json"):
        path, data = _annotation(root, name)
        data["images"], data["annotations"] = [], []
        path.write_text(json.dumps(data))
    return f"panoptic_{SPLIT}.json", "lists no image", WHOLE_FILE


DATA_DAMAGES: list[Damage] = [
    junk_image,
    truncated_image,
    resized_image,
    missing_panoptic_png,
    png_segment_not_in_segments_info,
    segments_info_id_not_in_png,
    malformed_captions_json,
    malformed_panoptic_json,
    captions_wrong_structure,
    image_id_wrong_type,
    image_path_escapes_root,
    panoptic_path_escapes_root,
    empty_split,
]


def _digests(root: Path, skip: str | None = None) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (skip and skip in p.parts)
    }


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def base_graph_count(scenes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    from neurogshn.data.coco import CocoPanopticDataset

    return len(CocoPanopticDataset(scenes_root, SPLIT, strict=True))


@pytest.mark.parametrize("damage", DATA_DAMAGES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_data_graphs_on_damaged_data(
    damage: Damage,
    strict: bool,
    scenes_root: Path,
    base_graph_count: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "data"
    shutil.copytree(scenes_root, root, ignore=shutil.ignore_patterns(CACHE))
    named, problem, lost = damage(root)
    before = _digests(root)
    argv = ["data", "graphs", "--data", str(root), "--split", SPLIT, "--no-progress"]
    code, out, err = _run(argv + (["--strict"] if strict else []), capsys)
    if strict or lost is WHOLE_FILE:
        assert code == 2, out + err
        message = err
        assert f"neurogshn data: error: {root}" in message, message
    else:
        assert code == 0, err
        message = out
        built = int(out.split(f"[{SPLIT}] ")[1].split(" graphs")[0])
        # every good record kept
        assert built == base_graph_count - lost, out
    assert named in message and problem in message, message
    # nothing of the data set changed (the cache folder is the command's output)
    assert _digests(root, skip=CACHE) == before


# ---------------------------------------------------------------- checkpoints


def _truncated_weights(ckpt: Path) -> tuple[str, str]:
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    return "model.safetensors", "truncated or corrupt"


def _pickle_weights(ckpt: Path) -> tuple[str, str]:
    marker = ckpt.parent / "pickle_ran"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"payload": Payload()}, ckpt / "model.safetensors")
    return "model.safetensors", "refusing to unpickle"


def _foreign_weights(ckpt: Path) -> tuple[str, str]:
    from safetensors.torch import save_file

    save_file({"other.weight": torch.zeros(3, 3)}, str(ckpt / "model.safetensors"))
    return "model.safetensors", "weights do not match config.json"


def _malformed_config(ckpt: Path) -> tuple[str, str]:
    path = ckpt / "config.json"
    path.write_text(path.read_text()[:50])
    return "config.json", "not valid JSON"


def _missing_config(ckpt: Path) -> tuple[str, str]:
    (ckpt / "config.json").unlink()
    return "config.json", "missing"


def _wrong_typed_config(ckpt: Path) -> tuple[str, str]:
    path = ckpt / "config.json"
    config = json.loads(path.read_text())
    config["embed_dim"] = "wide"
    path.write_text(json.dumps(config))
    return "config.json", "embed_dim must be int, got 'wide'"


@pytest.mark.parametrize(
    "damage",
    [
        _truncated_weights,
        _pickle_weights,
        _foreign_weights,
        _malformed_config,
        _missing_config,
        _wrong_typed_config,
    ],
    ids=lambda d: d.__name__.strip("_"),
)
def test_evaluate_refuses_a_damaged_checkpoint_by_name(
    damage: Callable[[Path], tuple[str, str]],
    scenes_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from neurogshn.model.gshn import GSHN

    torch.manual_seed(0)
    ckpt = GSHN.from_config_name("gshn-tiny", node_features=494, edge_features=9).save_pretrained(
        tmp_path / "ckpt"
    )
    named, problem = damage(ckpt)
    before = _digests(ckpt)
    argv = ["evaluate", "--task", "retrieval", "--checkpoint", str(ckpt), "--data",
            str(scenes_root), "--split", SPLIT, "--no-progress"]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 2, out + err
    assert f"{ckpt / named}" in err and problem in err, err
    assert not (tmp_path / "pickle_ran").exists()
    assert _digests(ckpt) == before


def test_pretrain_on_an_empty_training_split_names_the_data(
    scenes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    shutil.copytree(scenes_root, root, ignore=shutil.ignore_patterns(CACHE))
    for name in ("panoptic_train.json", "captions_train.json"):
        path, data = _annotation(root, name)
        data["images"], data["annotations"] = [], []
        path.write_text(json.dumps(data))
    repo = Path(__file__).resolve().parents[2]
    argv = ["pretrain", "--config", str(repo / "configs" / "tiny.json"), "--data", str(root),
            "--out", str(tmp_path / "run"), "--set", "schedule.max_steps=2",
            "--device", "cpu"]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 2, out + err
    assert f"{root} (split 'train'): no image has both a graph and a caption" in err, err


def test_captions_of_unknown_images_are_counted_in_a_warning(
    scenes_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from neurogshn.data.coco import CocoPanopticDataset

    root = tmp_path / "data"
    shutil.copytree(scenes_root, root, ignore=shutil.ignore_patterns(CACHE))
    path, data = _annotation(root, f"captions_{SPLIT}.json")
    extra = [dict(data["annotations"][0], id=10**9 + k, image_id=999999) for k in range(3)]
    data["annotations"] += extra
    path.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        ds = CocoPanopticDataset(root, SPLIT)
    assert f"{path}: 3 caption(s) name images that are not in the panoptic split" in caplog.text
    assert 999999 not in ds.captions and sum(map(len, ds.captions.values())) == len(
        data["annotations"]
    ) - len(extra)


def test_a_missing_split_is_named_with_the_files_looked_for(
    scenes_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["data", "graphs", "--data", str(scenes_root), "--split", "nosuch", "--no-progress"]
    code, out, err = _run(argv, capsys)
    assert code == 2, out + err
    assert f"{scenes_root}/annotations/panoptic_nosuch.json" in err
    assert "no panoptic annotations for split 'nosuch'" in err and "panoptic_nosuch2017.json" in err
