"""verify and energy on real node inputs of the shared tiny scenes data set (GSHN checkpoint)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from neurogshn.cli import main


@pytest.mark.timeout(300)
def test_verify_and_energy_on_scene_graphs(scenes_root: Path, tmp_path: Path, capsys) -> None:
    from neurogshn.model.gshn import GSHN

    data = tmp_path / "data"
    shutil.copytree(scenes_root, data)  # the graph cache is written under the data root
    torch.manual_seed(0)
    GSHN.from_config_name("gshn-tiny").save_pretrained(tmp_path / "gshn")
    ckpt, exp = str(tmp_path / "gshn"), str(tmp_path / "exp")
    assert main(["export", "--checkpoint", ckpt, "--out", exp, "--data", str(data),
                 "--split", "test", "--calib-images", "4"]) == 0  # fmt: skip
    report = tmp_path / "verify.json"
    args = ["verify", "--export", exp, "--checkpoint", ckpt, "--data", str(data)]
    rc = main([*args, "--split", "test", "--n", "4", "--lava-nodes", "12", "--json", str(report)])
    assert rc == 0
    rep = json.loads(report.read_text())
    assert rep["images"] == 4 and rep["lava_vs_reference"]["agreement"] == 1.0
    assert rep["lava_vs_reference"]["nodes"] == 12
    down = rep["downstream"]
    assert set(down["float"]) >= {"i2t_R@1", "t2i_R@1", "relation_swap_acc"}
    assert set(down["delta_points"]) == set(down["float"])
    text = capsys.readouterr().out
    assert "(3) downstream retrieval: float vs quantized spiking branch" in text
    for key in ("i2t_R@1", "t2i_R@1", "relation_swap_acc"):
        row = next(r for r in text.splitlines() if r.strip().startswith(key + " "))
        assert f"{down['delta_points'][key]:+.2f}" in row
    assert text.rstrip().endswith("Lava check: PASS (100 % identical spikes)")
    energy = tmp_path / "energy.json"
    assert main(["energy", "--checkpoint", ckpt, "--data", str(data), "--split", "test",
                 "--n", "4", "--json", str(energy)]) == 0  # fmt: skip
    e = json.loads(energy.read_text())
    assert e["gat_macs_per_image"] > 0 and e["activity_quantized"]["nodes_per_image"] > 1
    assert "gat_host_cmos45nm" in e["energy_per_image_pJ"]
