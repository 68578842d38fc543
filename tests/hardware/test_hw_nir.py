"""NIR export in the continuous-time reading: parameters, and the same spikes in Norse and
snnTorch (Rockpool's reading measured and explained), from unit encoders to a trained
checkpoint exported through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from hw_fixtures import encoder_checkpoint, make_encoder

from neurogshn.cli import main
from neurogshn.cli.export import NIR_CONSUMER_NAMES
from neurogshn.errors import ExportError
from neurogshn.hardware.nir_consumers import (
    NIR_CONSUMERS,
    compare_consumers,
    format_consumer_table,
    run_snntorch,
)
from neurogshn.hardware.nir_export import encoder_to_nir, write_nir

REPO = Path(__file__).resolve().parents[2]


def _inputs(enc, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, enc.in_features, generator=torch.Generator().manual_seed(seed))


def test_graph_is_the_continuous_time_reading_of_the_encoder(tmp_path: Path) -> None:
    enc = make_encoder(seed=6, sizes=(20, 14, 9), steps=7)
    dt = 1e-4
    graph = nir.read(str(write_nir(enc, tmp_path / "enc.nir", dt)))
    p = enc.neuron
    lif = graph.nodes["lif1"]
    assert isinstance(lif, nir.CubaLIF) and lif.tau_syn.shape == (14,)
    np.testing.assert_allclose(lif.tau_syn, dt / p.syn_decay, rtol=1e-6)
    np.testing.assert_allclose(lif.tau_mem, dt / p.mem_decay, rtol=1e-6)
    # Unit input and membrane gains in the Euler reading at dt (what snnTorch requires).
    np.testing.assert_allclose(lif.r, lif.tau_mem / dt, rtol=1e-6)
    np.testing.assert_allclose(lif.w_in * dt / lif.tau_syn, 1.0, rtol=1e-6)
    np.testing.assert_allclose(lif.v_threshold, p.v_th / p.mem_decay, rtol=1e-6)
    assert isinstance(graph.nodes["layer0"], nir.Affine)
    assert isinstance(graph.nodes["layer2"], nir.Linear)
    assert graph.metadata["dt"] == pytest.approx(dt)
    truncated = encoder_to_nir(enc, dt, num_layers=2)
    assert "lif2" not in truncated.nodes and ("lif1", "output") in truncated.edges
    with pytest.raises(ExportError, match="num_layers"):
        encoder_to_nir(enc, dt, num_layers=4)
    with pytest.raises(ExportError, match="positive"):
        encoder_to_nir(enc, 0.0)


def test_norse_and_snntorch_give_the_encoder_spikes_on_every_layer() -> None:
    enc = make_encoder(seed=6, sizes=(20, 14, 9), steps=7)
    reports = compare_consumers(enc, _inputs(enc, 200), 1e-4, ["norse", "snntorch"])
    for report in reports:
        assert report.status == "ok", report.status
        assert report.exact_reading and report.identical, report.to_dict()
        assert [la.layer for la in report.layers] == ["layer0", "layer1", "layer2"]
        for la in report.layers:
            assert la.agreement == 1.0 and la.consumer_rate == la.reference_rate
            assert 0.05 < la.reference_rate < 0.95  # spikes to agree on, not all-silent


def test_other_dt_is_exact_in_norse_and_refused_by_snntorch() -> None:
    enc = make_encoder(seed=2, sizes=(16, 12), steps=6)
    norse_report, snn_report = compare_consumers(enc, _inputs(enc), 1e-3, ["norse", "snntorch"])
    assert norse_report.identical
    assert snn_report.status.startswith("refused:") and "r not supported" in snn_report.status
    assert NIR_CONSUMERS["snntorch"].required_dt == 1e-4


def _rockpool_reading(enc, graph, x: torch.Tensor) -> torch.Tensor:
    """Rockpool's documented reading of a CubaLIF chain, simulated here independently."""
    out = x
    for i in range(len(enc.layers)):
        lin, lif = graph.nodes[f"layer{i}"], graph.nodes[f"lif{i}"]
        dt_rp = float(np.min(lif.tau_mem / (1 + lif.r)))
        alpha = torch.exp(torch.as_tensor(-dt_rp / lif.tau_mem, dtype=torch.float32))
        beta = torch.exp(torch.as_tensor(-dt_rp / lif.tau_syn, dtype=torch.float32))
        thr = torch.as_tensor(lif.v_threshold, dtype=torch.float32)
        w = torch.as_tensor(lin.weight)
        bias = torch.as_tensor(lin.bias) if isinstance(lin, nir.Affine) else 0.0
        isyn = torch.zeros(x.shape[0], w.shape[0])
        v = torch.zeros_like(isyn)
        spikes = []
        for t in range(enc.time_steps):
            inp = out if i == 0 else out[t]
            isyn = (isyn + inp @ w.T + bias) * beta
            v = alpha * v + isyn
            n = torch.where(v >= thr, torch.floor(v / thr), torch.zeros_like(v))
            v = v - n * thr
            spikes.append(n)
        out = torch.stack(spikes)
    return out


def test_rockpool_is_measured_and_its_differences_explain_it() -> None:
    enc = make_encoder(seed=3, sizes=(16, 12), steps=6)
    x = _inputs(enc, 100)
    (report,) = compare_consumers(enc, x, 1e-4, ["rockpool"])
    assert report.status == "ok" and not report.exact_reading
    assert len(report.differences) == 4 and not report.identical
    assert all(0.0 < la.agreement < 1.0 for la in report.layers)
    # Everything rockpool does differently is in the stated differences: simulating exactly
    # those rules reproduces its output spike counts.
    graph = encoder_to_nir(enc, 1e-4)
    got = NIR_CONSUMERS["rockpool"].run(graph, x, enc.time_steps, 1e-4)
    torch.testing.assert_close(got, _rockpool_reading(enc, graph, x), rtol=0, atol=0)
    table = format_consumer_table([report.to_dict()])
    assert table.splitlines()[0].split() == ["consumer", "version", "exact", "reading", "layer0",
                                             "layer1"]  # fmt: skip
    assert "rockpool" in table and "%" in table


def test_cli_consumer_names_match_the_registry() -> None:
    assert tuple(NIR_CONSUMERS) == NIR_CONSUMER_NAMES


def test_cli_refuses_unknown_consumer_and_can_skip_the_check(tmp_path: Path, capsys) -> None:
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    args = ["export", "--checkpoint", str(ckpt), "--target", "nir"]
    assert main([*args, "--out", str(tmp_path / "a"), "--consumers", "norse,brian"]) == 2
    assert "brian" in capsys.readouterr().out
    assert not (tmp_path / "a").exists()
    assert main([*args, "--out", str(tmp_path / "b"), "--consumers", "none"]) == 0
    sidecar = json.loads((tmp_path / "b" / "spiking_encoder.nir.json").read_text())
    assert sidecar["consumers"] == [] and sidecar["consumer_check_inputs"] == "not checked"
    graph = nir.read(str(tmp_path / "b" / "spiking_encoder.nir"))
    assert graph.nodes["lif0"].tau_mem.shape == (24,)


@pytest.fixture(scope="module")
def trained_tiny(scenes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gshn-tiny pretrained for six steps on the shared tiny scenes."""
    out = tmp_path_factory.mktemp("nir_pretrain") / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "neurogshn.cli", "pretrain", "--config",
           str(REPO / "configs" / "tiny.json"), "--set", "schedule.epochs=2", "--data",
           str(scenes_root), "--out", str(out), "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "final"


def test_trained_checkpoint_export_runs_spike_for_spike_in_norse_and_snntorch(
    trained_tiny: Path, scenes_root: Path, tmp_path: Path, capsys
) -> None:
    from neurogshn.hardware.source import load_spiking_branch
    from neurogshn.hardware.verify import load_data_inputs

    out = tmp_path / "nir"
    assert main(["export", "--checkpoint", str(trained_tiny), "--target", "nir", "--out",
                 str(out), "--data", str(scenes_root), "--split", "test",
                 "--calib-images", "4"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "spike agreement" in printed and "rockpool cannot express" in printed
    assert "spiking_encoder.nir" in printed and "spiking_encoder.nir.json" in printed
    sidecar = json.loads((out / "spiking_encoder.nir.json").read_text())
    assert sidecar["dt_seconds"] == 1e-4 and "test images" in sidecar["consumer_check_inputs"]
    by_name = {r["consumer"]: r for r in sidecar["consumers"]}
    assert set(by_name) == {"norse", "snntorch", "rockpool"}
    for name in ("norse", "snntorch"):
        assert by_name[name]["identical"], by_name[name]
        assert len(by_name[name]["layers"]) == 2
    assert by_name["rockpool"]["status"] == "ok" and by_name["rockpool"]["differences"]
    # A user's path: read the written file and run it in snnTorch on real node inputs.
    branch = load_spiking_branch(trained_tiny)
    inputs, _, _ = load_data_inputs(branch, scenes_root, "val", 3, trained_tiny)
    x = torch.as_tensor(np.concatenate(inputs), dtype=torch.float32)
    want = branch.encoder(x).spikes[-1]
    assert want.sum() > 0
    got = run_snntorch(nir.read(str(out / "spiking_encoder.nir")), x, branch.encoder.time_steps,
                       1e-4)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=0, atol=0)
