"""Norse → CUBA mapping and quantization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hw_fixtures import make_encoder, node_inputs

from neurogshn.errors import ExportError
from neurogshn.hardware.fixed_point import FixedPointNetwork
from neurogshn.hardware.quantize import norse_to_cuba, quantize_encoder, quantize_weight
from neurogshn.hardware.verify import float_spikes, spike_agreement
from neurogshn.model.spiking import LIFNeuronParameters, lif_layer_run


def _cuba_float(a: np.ndarray, i_decay: int, v_decay: int, vth_mant: float):
    """Lava's CUBA equations in exact real arithmetic (no rounding): u, v, spikes."""
    u = np.zeros(a.shape[1:])
    v = np.zeros(a.shape[1:])
    us, vs, ss = [], [], []
    for a_t in a:
        u = (1 - i_decay / 4096) * u + 64 * a_t
        v = (1 - v_decay / 4096) * v + u
        s = v > 64 * vth_mant
        v = np.where(s, 0.0, v)
        us.append(u)
        vs.append(v)
        ss.append(s)
    return np.stack(us), np.stack(vs), np.stack(ss)


@pytest.mark.parametrize(("tau_syn_inv", "tau_mem_inv"), [(0.5, 0.75), (0.25, 0.125), (1.0, 0.5)])
def test_norse_to_cuba_mapping_is_exact_in_real_arithmetic(tau_syn_inv, tau_mem_inv) -> None:
    p = LIFNeuronParameters(tau_syn_inv=tau_syn_inv, tau_mem_inv=tau_mem_inv, v_th=0.7)
    m = norse_to_cuba(p.syn_decay, p.mem_decay, p.v_th)
    assert m.i_decay == round(4096 * tau_syn_inv) and m.v_decay == round(4096 * tau_mem_inv)
    rng = np.random.default_rng(0)
    c = torch.tensor(rng.normal(0.3, 0.6, (12, 5, 7)))  # T×N×H input currents
    z, v_norse = lif_layer_run(c, p.to_norse(), p.dt, record_voltage=True)
    scale = 1000.0
    vth_mant = scale * p.v_th / p.mem_decay  # real-valued: isolates the mapping from rounding
    _, v, s = _cuba_float(scale * c.numpy(), m.i_decay, m.v_decay, vth_mant)
    np.testing.assert_array_equal(s, z.numpy() > 0)
    # Lava's v is Norse's v scaled by 64·s/δm (after reset both are 0)
    np.testing.assert_allclose(v, v_norse.numpy() * 64 * scale / p.mem_decay, rtol=1e-9, atol=1e-6)
    assert z.sum() > 20


def test_decays_loihi_cannot_express_are_refused() -> None:
    with pytest.raises(ExportError, match=r"vDecay"):
        norse_to_cuba(0.5, 1.0, 1.0)  # dt·τ_mem⁻¹ = 1 → vDecay 4096 has no 12-bit dv
    with pytest.raises(ExportError, match=r"iDecay"):
        norse_to_cuba(1e-5, 0.5, 1.0)  # rounds to iDecay 0
    assert norse_to_cuba(1.0, 0.5, 1.0).i_decay == 4096  # du = 4095 fits


def test_weights_out_of_range_raise_unless_clipped() -> None:
    w = np.array([[1.0, -0.5], [3.0, 0.1]])
    with pytest.raises(ExportError, match=r"layer7.*outside Loihi's 8-bit range"):
        quantize_weight(w, 100.0, clip=False, layer_name="layer7")
    q, rep = quantize_weight(w, 100.0, clip=True, layer_name="layer7")
    assert q.max() == 254 and rep["weights_clipped"] == 1
    assert np.all(q % 2 == 0) and q.min() >= -256


def test_quantized_network_report_and_ranges() -> None:
    enc = make_encoder()
    x = node_inputs()
    q = quantize_encoder(enc, x)
    assert q.layers[0].weight is None and q.layers[1].weight.dtype == np.int32
    w = q.layers[1].weight
    assert np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254 and np.abs(w).max() >= 250
    rep = q.report()["layers"]
    assert rep[1]["weight_rel_rms_error"] < 0.02 and rep[0]["input_rel_rms_error"] < 1e-3
    a0, sat = q.host_input(x)
    assert sat == 0 and np.abs(a0).max() <= 32767
    with pytest.raises(ExportError, match=r"layer1"):
        quantize_encoder(enc, x, weight_scale=1e4)
    clipped = quantize_encoder(enc, x, weight_scale=1e4, clip=True)
    assert clipped.layers[1].report["weights_clipped"] > 0


def test_later_layer_bias_is_refused() -> None:
    enc = make_encoder()
    enc.layers[1].bias = torch.nn.Parameter(torch.zeros(enc.layers[1].out_features))
    with pytest.raises(ExportError, match=r"layer1: has a bias"):
        quantize_encoder(enc, node_inputs())


def test_float_and_fixed_point_spikes_mostly_agree() -> None:
    enc = make_encoder(seed=2, sizes=(64, 32), in_features=12)
    x = node_inputs(n=40)
    q = quantize_encoder(enc, x)
    ref = FixedPointNetwork.from_quantized(q).run(q.host_input(x)[0])["spikes"]
    rows = spike_agreement(float_spikes(enc, x), ref)
    assert all(r["spike_agreement"] > 0.97 for r in rows), rows
    assert all(r["spike_count_float"] > 0 for r in rows)
