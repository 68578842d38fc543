"""PretrainingObjective: weighted total, weight 0 removes a loss, diagnostics, ITM."""

from __future__ import annotations

import pytest
import torch

import neurogshn.losses.objective as objective_mod
from neurogshn.errors import ConfigError
from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
from neurogshn.model import GSHN


def test_total_is_weighted_sum(tiny_model, make_batch, captions):
    torch.manual_seed(0)
    weights = {"itc": 1.0, "cl": 0.3, "stl": 0.2, "itm": 0.5}
    batch = PretrainBatch(make_batch(), captions, [captions[1], captions[0], None, None])
    out = PretrainingObjective(weights)(tiny_model, batch)
    expected = sum(w * out[k] for k, w in weights.items())
    # the ITM head's terms count inside ITM's weight
    c = tiny_model.config
    expected = expected + weights["itm"] * c.itm_mlm_weight * out["itm_mlm"]
    expected = expected + weights["itm"] * c.itm_grounding_weight * out.get("itm_grounding", 0.0)
    torch.testing.assert_close(out["loss"], expected)
    for key in (
        "diag/fusion_ratio",
        "diag/spike_rate_layer0",
        "diag/spike_rate_layer1",
        "diag/itc_temperature",
        "diag/itm_accuracy",
        "diag/mlm_accuracy",
    ):
        assert key in out and not out[key].requires_grad
    assert out["loss"].requires_grad


@pytest.mark.parametrize(
    "name,fn",
    [
        ("cl", "spatiotemporal_cl_loss"),
        ("stl", "stl_loss"),
        ("itm", "itm_loss"),
        ("itm", "mlm_loss"),
        ("itc", "itc_loss"),
    ],
)
def test_weight_zero_is_not_computed(name, fn, tiny_model, make_batch, captions, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError(f"{fn} called with weight 0")

    monkeypatch.setattr(objective_mod, fn, boom)
    out = PretrainingObjective({name: 0.0})(tiny_model, PretrainBatch(make_batch(), captions, []))
    assert name not in out and torch.isfinite(out["loss"])


def test_gat_only_model_without_snn_losses(tiny_overrides, make_batch, captions):
    model = GSHN.from_config_name(
        "gshn-tiny", **tiny_overrides, mode="gat_only", cl_weight=0, stl_weight=0
    )
    assert model.cl_head is None and model.stl_projector is None
    out = PretrainingObjective()(model, PretrainBatch(make_batch(), captions, []))
    losses = {k for k in out if not k.startswith("diag/")}
    assert losses == {"itc", "itm", "itm_mlm", "loss"}
    with pytest.raises(ConfigError, match="cl_weight=0"):
        PretrainingObjective({"cl": 1.0})(model, PretrainBatch(make_batch(), captions, []))
    with pytest.raises(ConfigError, match="unknown loss"):
        PretrainingObjective({"xyz": 1.0})


def test_batch_validation(make_batch, captions):
    with pytest.raises(ValueError, match="captions"):
        PretrainBatch(make_batch(), captions[:3], [])


@pytest.mark.parametrize(
    "weights",
    [
        dict(itm_weight=0.0),
        dict(itc_weight=0.0),
        dict(cl_weight=0.0, stl_weight=0.0, itm_weight=0.0),
    ],
)
def test_every_trainable_parameter_gets_a_gradient(weights, tiny_overrides, make_batch, captions):
    """No unused trainable parameter (what DistributedDataParallel requires)."""
    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, **weights)
    out = PretrainingObjective()(model, PretrainBatch(make_batch(), captions, [captions[1]] * 4))
    out["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    frozen = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    if weights.get("itc_weight", 1.0) == 0:
        assert "pooling" in frozen  # nothing trains the pooled image embedding without ITC
    token_proj = model.text_encoder.token_proj.weight
    assert token_proj.requires_grad == (weights.get("itm_weight", 1.0) > 0)
    assert "spiking_encoder" not in frozen
