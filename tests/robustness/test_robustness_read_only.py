"""No surprise writes: the read-only commands change nothing in the data root (its graph
cache folder aside), in the checkpoint or in an export they read; they write only where
their output option points."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from neurogshn.cli import main

CACHE = ".neurogshn_cache"


def snapshot(*roots: Path) -> dict[str, str]:
    """md5 of every file under ``roots`` (the graph cache folder left out)."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and CACHE not in path.relative_to(root).parts:
                out[str(path)] = hashlib.md5(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def workspace(scenes_root, tmp_path_factory):
    """A private copy of the tiny data set, a tiny checkpoint sized to it, and a netx export."""
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.model.gshn import GSHN

    base = tmp_path_factory.mktemp("readonly")
    data = base / "data"
    shutil.copytree(scenes_root, data, ignore=shutil.ignore_patterns(CACHE))
    graphs = load_graph_dataset(data, "val", progress=False)
    torch.manual_seed(0)
    model = GSHN.from_config_name(
        "gshn-tiny", node_features=graphs.feature_dim, edge_features=graphs.edge_dim
    )
    ckpt = model.save_pretrained(base / "ckpt")
    export = base / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(export)]) == 0
    return data, Path(ckpt), export, base


COMMANDS = {
    "evaluate": lambda d, c, e, o: [
        "evaluate", "--task", "retrieval", "--checkpoint", c, "--data", d, "--split", "val",
        "--max-images", "4", "--no-progress", "--json", f"{o}/eval.json",
    ],
    "energy": lambda d, c, e, o: [
        "energy", "--checkpoint", c, "--data", d, "--split", "val", "--n", "2",
        "--json", f"{o}/energy.json",
    ],
    "verify": lambda d, c, e, o: [
        "verify", "--export", e, "--checkpoint", c, "--data", d, "--split", "val", "--n", "2",
        "--no-lava", "--no-downstream", "--json", f"{o}/verify.json",
    ],
    "raster": lambda d, c, e, o: [
        "raster", "--checkpoint", c, "--data", d, "--split", "val", "--out", f"{o}/raster.png",
    ],
    "export": lambda d, c, e, o: ["export", "--checkpoint", c, "--out", f"{o}/export2"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_read_only_command_changes_nothing_it_reads(command, workspace, tmp_path):
    data, ckpt, export, _ = workspace
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(data, ckpt, export)
    argv = COMMANDS[command](str(data), str(ckpt), str(export), str(out))
    assert main(argv) == 0
    assert snapshot(data, ckpt, export) == before
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written, f"{command} wrote nothing into its output folder"
