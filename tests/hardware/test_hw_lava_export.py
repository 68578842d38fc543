"""Export → netx load → Lava fixed_pt run → spike-for-spike equal to the fixed-point reference."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hw_fixtures import encoder_checkpoint, make_encoder, node_inputs

from neurogshn.cli import main
from neurogshn.hardware.export import export_lava, load_export
from neurogshn.hardware.fixed_point import FixedPointNetwork
from neurogshn.hardware.lava_runner import run_lava
from neurogshn.hardware.source import SpikingBranch


@pytest.mark.timeout(120)
def test_export_runs_bit_exact_in_lava(tmp_path: Path) -> None:
    enc = make_encoder(seed=4, sizes=(24, 16, 10), steps=5)
    x = node_inputs(n=6)
    res = export_lava(SpikingBranch(enc), tmp_path, "enc", x)
    exp = load_export(tmp_path)
    a0, sat = exp.host_input(x)
    assert sat == 0
    ref = FixedPointNetwork.from_netx(res.net_path, 5).run(a0)["spikes"]
    lava = run_lava(res.net_path, a0, 5)
    assert [s.shape for s in lava] == [(5, 6, 24), (5, 6, 16), (5, 6, 10)]
    for layer, (got, want) in enumerate(zip(lava, ref, strict=True)):
        np.testing.assert_array_equal(got, want, err_msg=f"layer {layer}")
    assert all(s.sum() > 0 for s in ref) and not all(s.all() for s in ref)
    # the per-node reset really isolates nodes: the same node alone gives the same spikes
    alone = run_lava(res.net_path, a0[3:4], 5)
    np.testing.assert_array_equal(alone[-1][:, 0], lava[-1][:, 3])


def test_netx_file_layout_follows_the_spec(tmp_path: Path) -> None:
    enc = make_encoder()
    res = export_lava(SpikingBranch(enc), tmp_path, "enc", node_inputs())
    with h5py.File(res.net_path, "r") as f:
        assert sorted(f["layer"].keys()) == ["0", "1", "2"]
        assert f["layer/0/type"][0] == b"input" and list(f["layer/0/shape"][()]) == [24]
        for k, (n_in, n_out) in {"1": (24, 24), "2": (24, 16)}.items():
            g = f[f"layer/{k}"]
            assert g["type"][0] == b"dense" and not g.attrs.keys()
            assert int(g["inFeatures"][()]) == n_in and int(g["outFeatures"][()]) == n_out
            assert g["weight"].shape == (n_out, n_in)
            for field in ("type", "iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike"):
                assert isinstance(g[f"neuron/{field}"], h5py.Dataset)
            assert int(g["neuron/iDecay"][()]) == 2048 and int(g["neuron/vDecay"][()]) == 3072
        np.testing.assert_array_equal(f["layer/1/weight"][()], np.eye(24))
    side = json.loads(res.sidecar_path.read_text())
    assert side["time_steps"] == 6 and side["netx_load"]["input_message_bits"] == 16
    assert side["input_encoding"]["input_scale"] > 0
    assert any("GAT" in h for h in side["stays_on_host"])
    assert side["norse_to_cuba"]["i_decay"] == 2048


@pytest.mark.timeout(180)
def test_cli_export_then_verify_reports_identical_lava(tmp_path: Path, capsys) -> None:
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder(seed=5, steps=4))
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--target", "lava", "--out", str(out)]) == 0
    assert (out / "spiking_encoder.net").is_file()
    exported = capsys.readouterr().out  # a table and the files written, not raw dicts
    assert "{" not in exported
    header, first, second = exported.splitlines()[:3]
    assert header.split()[:3] == ["layer", "input", "vth_mant"]
    assert first.startswith("layer0  graded") and second.startswith("layer1  binary spikes")
    for name in ("spiking_encoder.net", "spiking_encoder.host.safetensors", "spiking_encoder.json"):
        assert str(out / name) in exported, name
    report_path = tmp_path / "verify.json"
    rc = main(
        ["verify", "--export", str(out), "--checkpoint", str(ckpt), "--random", "3",
         "--json", str(report_path)]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(report_path.read_text())
    lava = report["lava_vs_reference"]
    assert lava["agreement"] == 1.0 and all(lava["identical_per_layer"]) and lava["nodes"] == 24
    assert len(report["float_vs_quantized"]) == 2
    assert "random" in report["inputs"]
    text = capsys.readouterr().out  # a readable table, not the JSON
    for line in ("(1) Lava fixed_pt vs fixed-point reference",
                 "run config: Loihi2SimCfg(select_tag='fixed_pt')", "nodes: 24",
                 "agreement: 100.00 % (0 mismatching entries)",
                 "identical per layer: layer0 yes, layer1 yes",
                 "(2) float (Norse) vs quantized", "spike agreement", "wall time:",
                 f"full report (JSON): {report_path}"):  # fmt: skip
        assert line in text, line
    rows = [r for r in text.splitlines() if r.startswith("  layer0 ") and "%" in r]
    assert len(rows) == 1 and f"{report['float_vs_quantized'][0]['rate_float']:.4f}" in rows[0]
    assert text.rstrip().splitlines()[-1] == "Lava check: PASS (100 % identical spikes)"


def test_verify_exits_nonzero_when_lava_differs(tmp_path: Path, monkeypatch, capsys) -> None:
    import neurogshn.hardware.lava_runner as lava_runner

    real = lava_runner.run_lava

    def flipped(*args, **kwargs):
        spikes = real(*args, **kwargs)
        spikes[-1][0, 0, 0] = not spikes[-1][0, 0, 0]
        return spikes

    monkeypatch.setattr(lava_runner, "run_lava", flipped)
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder(steps=3))
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    rc = main(["verify", "--export", str(out), "--checkpoint", str(ckpt), "--random", "1"])
    assert rc == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("Lava check: FAIL") and "DIFFER" in last
