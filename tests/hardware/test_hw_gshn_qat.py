"""The GSHN checkpoint path (input capture, quantized drop-in encoder) and QAT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hw_fixtures import make_encoder, node_inputs

from neurogshn.hardware.export import export_lava, load_export
from neurogshn.hardware.qat import fake_quant, qat_finetune
from neurogshn.hardware.source import load_spiking_branch
from neurogshn.hardware.verify import (
    QuantizedSpikingEncoder,
    capture_encoder_inputs,
    swapped_spiking_encoder,
    verify_export,
)


def _graph(n: int, f: int, g: int, seed: int):
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(seed)
    ei = torch.tensor([[i, j] for i in range(n) for j in range(n) if i != j]).T
    return Data(
        x=torch.randn(n, f, generator=gen), edge_index=ei,
        edge_attr=torch.randn(ei.shape[1], g, generator=gen), pos=torch.rand(n, 2, generator=gen),
        is_global=torch.arange(n) == 0, image_id=seed, num_nodes=n,
    )  # fmt: skip


@pytest.mark.timeout(180)
def test_gshn_checkpoint_export_verify_and_drop_in(tmp_path: Path) -> None:
    from torch_geometric.data import Batch

    from neurogshn.model.gshn import GSHN

    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny")
    model.save_pretrained(tmp_path / "gshn")
    branch = load_spiking_branch(tmp_path / "gshn")
    assert branch.model is not None
    c = branch.model.config
    graphs = [_graph(n, c.node_features, c.edge_features, n) for n in (5, 3, 6)]
    inputs = capture_encoder_inputs(branch, graphs)
    with torch.no_grad():
        expected = branch.model.snn_input_norm(graphs[1].x).double().numpy()
    np.testing.assert_allclose(inputs[1], expected, rtol=1e-6, atol=1e-6)
    export_lava(branch, tmp_path / "exp", "enc", np.concatenate(inputs))
    exp = load_export(tmp_path / "exp")
    report = verify_export(branch, exp, inputs)
    assert report["lava_vs_reference"]["agreement"] == 1.0
    m = branch.model
    original = m.spiking_encoder
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        ref = m.encode_image(batch).image_embeds
        with swapped_spiking_encoder(m, QuantizedSpikingEncoder(exp, original)):
            quant = m.encode_image(batch)
    assert m.spiking_encoder is original
    assert quant.spikes[0].shape == (c.time_steps, 14, c.snn_hidden[0])
    assert torch.all((ref * quant.image_embeds).sum(-1) > 0.98)


def test_fake_quant_rounds_forward_and_passes_gradient() -> None:
    x = torch.tensor([0.26, -0.74, 1.1], requires_grad=True)
    y = fake_quant(x, 0.5)
    torch.testing.assert_close(y, torch.tensor([0.5, -0.5, 1.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))


def test_qat_never_leaves_agreement_worse() -> None:
    enc = make_encoder(seed=3, sizes=(48, 32))
    w_before = enc.layers[1].weight.detach().clone()
    res = qat_finetune(enc, node_inputs(n=60), steps=6, eval_every=3, lr=1e-3)
    assert len(res.history) == 3 and len(res.agreement_after) == 2
    assert np.mean(res.agreement_after) >= np.mean(res.agreement_before)
    if res.kept.startswith("original"):
        torch.testing.assert_close(enc.layers[1].weight, w_before)
    assert not enc.training
