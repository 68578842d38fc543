"""Bad inputs give clear errors naming the file or the layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hw_fixtures import encoder_checkpoint, make_encoder, node_inputs

from neurogshn.cli import main
from neurogshn.errors import CheckpointError, ExportError
from neurogshn.hardware.export import export_lava
from neurogshn.hardware.fixed_point import FixedPointNetwork
from neurogshn.hardware.netx_export import read_netx
from neurogshn.hardware.source import SpikingBranch, load_spiking_branch
from neurogshn.model.spiking import LIFNeuronParameters, SpikingEncoder


def test_corrupt_and_truncated_net_files(tmp_path: Path) -> None:
    res = export_lava(SpikingBranch(make_encoder()), tmp_path, "enc", node_inputs())
    data = res.net_path.read_bytes()
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match=r"truncated.net"):
        FixedPointNetwork.from_netx(truncated, 6)
    garbage = tmp_path / "garbage.net"
    garbage.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(ExportError, match=r"garbage.net.*not a readable HDF5"):
        read_netx(garbage)
    with pytest.raises(ExportError, match=r"missing.net: no such"):
        read_netx(tmp_path / "missing.net")


def test_netx_file_without_layers_or_fields(tmp_path: Path) -> None:
    import h5py

    p = tmp_path / "empty.net"
    with h5py.File(p, "w") as f:
        f.create_group("simulation")
    with pytest.raises(ExportError, match=r"empty.net: no 'layer' group"):
        read_netx(p)
    p2 = tmp_path / "noweight.net"
    with h5py.File(p2, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S5", [b"dense"])
    with pytest.raises(ExportError, match=r"noweight.net: layer/0: missing dataset 'weight'"):
        read_netx(p2)


def test_checkpoint_with_neurons_loihi_cannot_express(tmp_path: Path, capsys) -> None:
    enc = SpikingEncoder(12, (8,), time_steps=4, neuron=LIFNeuronParameters(tau_mem_inv=1.0))
    ckpt = encoder_checkpoint(tmp_path / "ckpt", enc)
    rc = main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "vDecay" in capsys.readouterr().err


def test_weights_out_of_range_name_the_layer(tmp_path: Path, capsys) -> None:
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    args = ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
            "--weight-scale", "5000"]  # fmt: skip
    assert main(args) == 2
    assert "layer1" in capsys.readouterr().err
    assert main([*args, "--clip"]) == 0
    out = capsys.readouterr().out
    assert "weights clipped" in out
    row = next(line for line in out.splitlines() if line.startswith("layer1 "))
    assert int(row.split()[6]) > 0, row  # layer1 binary spikes VTH ERR % CLIPPED ...


def test_broken_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config.json"):
        load_spiking_branch(tmp_path)
    ckpt = encoder_checkpoint(tmp_path / "ckpt", make_encoder())
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"model.safetensors"):
        load_spiking_branch(ckpt)
