"""Environment proof for Lava + lava-dl: slayer export → netx load → Lava fixed_pt run.

A two-layer CUBA network built from lava-dl's own slayer blocks (weights quantized by
slayer's default pre-hook, ``quantize_8bit``, to the even integers of Loihi's 8-bit synapse) is
exported with slayer's ``export_hdf5``, loaded by ``netx.hdf5.Network`` and run for 20 steps
on Lava's bit-accurate CPU models (``Loihi2SimCfg(select_tag='fixed_pt')``). Its output spikes
must equal, spike for spike, those slayer computes for the same input.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurogshn.lava_compat import lava_module, netx, slayer

STEPS = 20
N_IN, N_HID, N_OUT = 12, 16, 8


def _slayer_network(seed: int) -> torch.nn.Module:
    sl = slayer()
    torch.manual_seed(seed)
    neuron = {
        "threshold": 1.25,
        "current_decay": 0.25,
        "voltage_decay": 0.03,
        "tau_grad": 0.03,
        "scale_grad": 3,
        "requires_grad": False,
    }

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(
                [
                    # default pre-hook: the neuron's quantize_8bit (even integers ×1/64)
                    sl.block.cuba.Dense(neuron, N_IN, N_HID, weight_scale=2),
                    sl.block.cuba.Dense(neuron, N_HID, N_OUT, weight_scale=2),
                ]
            )

        def forward(self, spikes: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                spikes = block(spikes)
            return spikes

        def export_hdf5(self, path: Path) -> None:
            with h5py.File(path, "w") as handle:
                layer = handle.create_group("layer")
                for i, block in enumerate(self.blocks):
                    block.export_hdf5(layer.create_group(f"{i}"))

    return Net().eval()


def _run_lava(net_path: Path, spikes_in: np.ndarray) -> np.ndarray:
    hdf5 = netx().hdf5
    source_mod = lava_module("lava.proc.io.source")
    sink_mod = lava_module("lava.proc.io.sink")
    run_cfg = lava_module("lava.magma.core.run_configs")
    run_cond = lava_module("lava.magma.core.run_conditions")

    net = hdf5.Network(net_config=str(net_path))
    source = source_mod.RingBuffer(data=spikes_in.astype(np.int32))
    sink = sink_mod.RingBuffer(shape=net.out.shape, buffer=STEPS)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(
            condition=run_cond.RunSteps(num_steps=STEPS),
            run_cfg=run_cfg.Loihi2SimCfg(select_tag="fixed_pt"),
        )
        return sink.data.get().astype(np.int64)
    finally:
        net.stop()


@pytest.mark.timeout(120)
def test_slayer_export_runs_bit_exact_in_lava_fixed_pt(tmp_path: Path) -> None:
    model = _slayer_network(seed=3)
    rng = np.random.default_rng(7)
    spikes_in = (rng.random((N_IN, STEPS)) < 0.35).astype(np.float32)  # neurons × time
    with torch.no_grad():
        expected = model(torch.from_numpy(spikes_in)[None]).squeeze(0).numpy()
    assert expected.sum() > 5, "test network must spike to be a meaningful comparison"

    net_path = tmp_path / "two_layer.net"
    model.export_hdf5(net_path)
    with h5py.File(net_path, "r") as handle:  # the netx layout: datasets, not attributes
        assert set(handle["layer"].keys()) == {"0", "1"}
        assert handle["layer/0/type"][0].decode() == "dense"
        weight = handle["layer/0/weight"][()]
        assert weight.shape == (N_HID, N_IN)
        assert np.all(weight % 2 == 0) and weight.min() >= -256 and weight.max() <= 254
        assert int(handle["layer/1/neuron/vThMant"][()]) == 80  # 1.25 × 64

    got = _run_lava(net_path, spikes_in)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected.astype(np.int64))
