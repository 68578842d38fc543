"""benchmarks/itm_probe.py on the fixture: trains a fresh head on frozen encoders and reports
per-kind hard-negative accuracy (tests/tasks)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _probe_module():
    spec = importlib.util.spec_from_file_location("itm_probe", REPO / "benchmarks/itm_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pad_masks_and_zero_fills():
    mod = _probe_module()
    out, mask = mod.pad([torch.ones(2, 3), torch.ones(4, 3)], torch.device("cpu"))
    assert out.shape == (2, 4, 3)
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    assert float(out[0, 2:].abs().sum()) == 0.0


def test_probe_runs_on_frozen_checkpoint(scenes_root, tmp_path):
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.model.gshn import GSHN

    graphs = load_graph_dataset(scenes_root, "train", progress=False)
    torch.manual_seed(0)
    model = GSHN.from_config_name(
        "gshn-tiny", node_features=graphs.feature_dim, edge_features=graphs.edge_dim
    )
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    before = {
        k: v.clone() for k, v in GSHN.from_pretrained(ckpt, device="cpu").state_dict().items()
    }
    out = tmp_path / "probe.json"
    mod = _probe_module()
    res = mod.main(
        [
            "--checkpoint", str(ckpt), "--data", str(scenes_root), "--steps", "4",
            "--eval-every", "2", "--batch-size", "4", "--device", "cpu", "--json", str(out),
        ]
    )  # fmt: skip
    assert [row["step"] for row in res["curve"]] == [2, 4]
    for row in res["curve"]:
        kinds = {"relation", "attribute", "object"} & set(row)
        assert kinds, row
        assert all(0.0 <= row[k] <= 1.0 for k in kinds)
        assert row["loss"] > 0
    assert json.loads(out.read_text())["curve"] == res["curve"]
    # the checkpoint is only read: its weights are unchanged on disk
    after = GSHN.from_pretrained(ckpt, device="cpu").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
