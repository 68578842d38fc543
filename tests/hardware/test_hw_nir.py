"""NIR export: per-neuron arrays, nir.read, and norse.torch.from_nir giving the same spikes."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import torch
from hw_fixtures import encoder_checkpoint, make_encoder

from neurogshn.cli import main
from neurogshn.hardware.nir_export import run_nir_norse, write_nir


def test_nir_round_trip_gives_the_same_spikes(tmp_path: Path) -> None:
    enc = make_encoder(seed=6, sizes=(20, 14, 9), steps=7)
    path = write_nir(enc, tmp_path / "enc.nir")
    graph = nir.read(str(path))
    lif = graph.nodes["lif1"]
    assert isinstance(lif, nir.CubaLIF) and lif.tau_syn.shape == (14,)
    assert lif.v_threshold.shape == (14,) and np.allclose(lif.w_in, 1 / enc.neuron.syn_decay)
    assert isinstance(graph.nodes["layer0"], nir.Affine)
    x = torch.randn(11, enc.in_features, generator=torch.Generator().manual_seed(0))
    got = run_nir_norse(path, x, enc.time_steps, enc.neuron.dt)
    want = enc(x).spikes[-1]
    assert want.sum() > 10
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cli_nir_target(tmp_path: Path) -> None:
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    assert main(["export", "--checkpoint", str(ckpt), "--target", "nir", "--out",
                 str(tmp_path / "o")]) == 0  # fmt: skip
    assert nir.read(str(tmp_path / "o" / "spiking_encoder.nir")).nodes["lif0"].tau_mem.shape == (
        24,
    )
