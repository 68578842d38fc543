"""Energy arithmetic against hand-computed numbers, profiles and their packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hw_fixtures import encoder_checkpoint, make_encoder

from neurogshn.cli import main
from neurogshn.errors import InputFileError
from neurogshn.hardware.energy import activity_from_spikes, estimate_energy, gatv2_macs
from neurogshn.hardware.profiles import load_profile, parse_profile

REPO = Path(__file__).resolve().parents[2]


def _tiny_activity(active=None):
    # T=2, N=1; layer0 (2 neurons): 3 spikes; layer1 (3 neurons): 2 spikes; F = 4
    s0 = np.array([[[1, 1]], [[1, 0]]])
    s1 = np.array([[[0, 1, 0]], [[1, 0, 0]]])
    return activity_from_spikes([s0, s1], 4, active, nodes_per_image=3, edges_per_image=6)


def test_energy_matches_hand_computation() -> None:
    cmos, loihi = load_profile("cmos45nm"), load_profile("loihi1")
    assert (cmos["mac"], cmos["ac"], loihi["synaptic_spike_op"]) == (4.6, 0.9, 23.6)
    act = _tiny_activity()
    assert [la.synaptic_ops for la in act.layers] == [4.0, 9.0]  # 2·T graded; 3 spikes × 3
    assert act.layers[1].firing_rate == pytest.approx(2 / 6)
    gat = gatv2_macs(3, 6, 4, 4, 1, 2)
    assert gat == 2 * 3 * 4 * 4 + 6 * (2 + 2) * 4
    est = estimate_energy(act, cmos, loihi, gat)
    node = est["energy_per_node_pJ"]
    assert node["snn_cmos45nm"] == pytest.approx(13 * 0.9 + 8 * 4.6)
    assert node["ann_cmos45nm"] == pytest.approx((4 * 2 + 2 * 3) * 4.6)
    assert node["snn_loihi1"] == pytest.approx(13 * 23.6 + 10 * 81 + 5 * 1.7 + 8 * 4.6)
    img = est["energy_per_image_pJ"]
    assert img["snn_cmos45nm"] == pytest.approx(3 * node["snn_cmos45nm"])
    assert img["gat_host_cmos45nm"] == pytest.approx(gat * 4.6)
    assert est["ratios"]["ann_over_snn_cmos45nm"] == pytest.approx(64.4 / 48.5)
    assert "ESTIMATE" in est["note"]
    # inactive neuron updates cost 52 pJ instead of 81
    active = [np.ones((2, 1, 2), bool), np.array([[[1, 1, 1]], [[0, 0, 0]]], bool)]
    est2 = estimate_energy(_tiny_activity(active), cmos, loihi)
    assert est2["energy_per_node_pJ"]["snn_loihi1"] == pytest.approx(
        13 * 23.6 + 7 * 81 + 3 * 52 + 5 * 1.7 + 8 * 4.6
    )


def test_profiles_cite_sources_and_bad_profiles_are_rejected() -> None:
    for name in ("loihi1", "cmos45nm"):
        p = load_profile(name)
        assert p.citation and p.doi
    assert "Davies" in load_profile("loihi1").citation
    assert not list((REPO / "hardware" / "profiles").glob("loihi2*.json"))
    with pytest.raises(InputFileError, match=r"bad.json.*cite"):
        parse_profile(
            json.dumps({"name": "x", "units": "pJ", "source": {"citation": " "}, "constants": {}}),
            "bad.json",
        )
    with pytest.raises(InputFileError, match=r"lacks constants"):
        parse_profile(
            json.dumps(
                {"name": "cmos45nm", "units": "pJ", "source": {"citation": "c"}, "constants": {}}
            ),
            "p.json",
        )


@pytest.mark.timeout(180)
def test_profiles_found_after_a_non_editable_wheel_install(tmp_path: Path) -> None:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    wheel = next(wheels.glob("neurogshn-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    code = (
        "import neurogshn, json; from neurogshn.hardware.profiles import load_profile;"
        "p = load_profile('loihi1');"
        "print(json.dumps([neurogshn.__file__, p.path, p['synaptic_spike_op']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True,
        cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
    )  # fmt: skip
    module_file, profile_path, value = json.loads(out.stdout)
    assert module_file.startswith(str(site)) and value == 23.6
    assert profile_path.startswith(str(site)) and "_profiles" in profile_path


def test_cli_energy_writes_json_and_plot(tmp_path: Path, capsys) -> None:
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    out, png = tmp_path / "e.json", tmp_path / "e.png"
    rc = main(["energy", "--checkpoint", str(ckpt), "--random", "2", "--json", str(out),
               "--plot", str(png)])  # fmt: skip
    assert rc == 0 and png.stat().st_size > 1000
    rep = json.loads(out.read_text())
    assert set(rep["energy_per_image_pJ"]) == {"snn_cmos45nm", "ann_cmos45nm", "snn_loihi1"}
    assert rep["activity_quantized"]["layers"][0]["synaptic_ops"] == 24 * 6
    assert "ESTIMATE" in rep["note"] and rep["profiles"]["loihi1"]["doi"]
    text = capsys.readouterr().out  # a readable table, not the JSON
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert text.startswith("neurogshn energy: ALL FIGURES ARE ESTIMATES")
    for line in ("firing rates (spikes / neuron / step)", "counts per node", "synaptic ops:",
                 "spikes:", "neuron updates:", "energy ESTIMATE per image",
                 "spiking branch, 45 nm CMOS", "spiking branch, Loihi 1 constants",
                 "ANN of the same shape, 45 nm CMOS", "ANN / SNN (45 nm CMOS):",
                 "ANN (45 nm CMOS) / SNN (Loihi 1):", "profiles used", "loihi1.json",
                 "cmos45nm.json", "source: M. Davies", f"full report (JSON): {out}"):  # fmt: skip
        assert line in text, line
    node = rep["energy_per_image_pJ"]["snn_cmos45nm"] / 1e3
    assert f"{node:.3f}" in text  # per-image figure in nJ
    rate = rep["activity_quantized"]["layers"][1]["firing_rate"]
    assert "layer1" in text and f"{rate:.4f}" in text


@pytest.mark.parametrize(
    ("hardware", "present", "absent"),
    [("loihi1", "snn_loihi1", "snn_cmos45nm"), ("cmos45nm", "snn_cmos45nm", "snn_loihi1")],
)
def test_cli_energy_hardware_choice(tmp_path: Path, hardware: str, present: str, absent: str):
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    out = tmp_path / "e.json"
    rc = main(["energy", "--checkpoint", str(ckpt), "--random", "1", "--hardware", hardware,
               "--json", str(out)])  # fmt: skip
    assert rc == 0
    rep = json.loads(out.read_text())
    assert present in rep["energy_per_image_pJ"] and absent not in rep["energy_per_image_pJ"]
    assert "ann_cmos45nm" in rep["energy_per_image_pJ"]


def test_cli_plot_is_the_documented_chart(tmp_path: Path) -> None:
    """energy --plot draws viz.plot_energy_report: linear energy axis from zero with values
    on the bars and readable part names, beside the firing rate of each layer."""
    from neurogshn.viz import plot_energy_report

    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    out = tmp_path / "e.json"
    assert main(["energy", "--checkpoint", str(ckpt), "--random", "2", "--json", str(out),
                 "--plot", str(tmp_path / "e.png")]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    fig = plot_energy_report(report)
    energy_ax, rates_ax = fig.axes[:2]
    assert energy_ax.get_yscale() == "linear" and energy_ax.get_ylim()[0] == 0
    parts = {c.get_label() for c in energy_ax.containers}
    assert parts == {"spiking branch", "ANN equivalent"}  # names, not report keys
    assert all("_" not in t.get_text() for t in energy_ax.get_xticklabels())
    values = {t.get_text() for t in energy_ax.texts}
    snn = report["energy_per_image_pJ"]["snn_cmos45nm"]
    assert any(abs(float(v) - snn / 1e3) / (snn / 1e3) < 0.01 for v in values if v)  # nJ label
    rates = [p.get_height() for p in rates_ax.containers[0]]
    want = [layer["firing_rate"] for layer in report["activity_quantized"]["layers"]]
    assert rates == pytest.approx(want)
    assert [t.get_text() for t in rates_ax.get_xticklabels()] == ["layer0", "layer1"]
