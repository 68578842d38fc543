"""Grounded geometry in the cross-encoder: where each token's referents lie, passed to the
other tokens by word offset; its place in the blocks, its zero start, what it needs, and the
comparison of two referents it makes learnable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.model.config import LEGACY_ITM_FIELDS, GSHNConfig
from neurogshn.model.itm import ITMHead
from neurogshn.model.positions import GroundedGeometry, fourier_features, grounded_centroids

D, P, L, N = 16, 3, 7, 4

_PROBE = Path(__file__).resolve().parents[2] / "benchmarks" / "relation_probe.py"
_spec = importlib.util.spec_from_file_location("neurogshn_bench_relation_probe", _PROBE)
relation_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(relation_probe)


def inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(P, L, D, generator=gen)
    token_mask = torch.ones(P, L, dtype=torch.bool)
    token_mask[1, 5:] = False
    nodes = torch.randn(P, N, D, generator=gen)
    node_mask = torch.ones(P, N, dtype=torch.bool)
    pos = torch.rand(P, N, 2, generator=gen)
    return tokens, token_mask, nodes, node_mask, pos


def test_grounded_centroid_is_the_attention_weighted_mean_of_the_node_centroids():
    attention = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.2, 0.0]]])  # 2 tokens, 3 nodes
    pos = torch.tensor([[[0.0, 0.0], [1.0, 0.5], [0.3, 0.3]]])
    centroids, mass = grounded_centroids(attention, pos)
    torch.testing.assert_close(mass, torch.tensor([[1.0, 0.2]]))
    # the second token puts 0.2 on node 1 (the rest on the null node): its referent is node 1
    torch.testing.assert_close(centroids, torch.tensor([[[0.5, 0.25], [1.0, 0.5]]]))


def test_a_referent_before_and_after_a_token_enter_through_different_matrices():
    geometry = GroundedGeometry(dim=3, max_offset=1, frequencies=1)
    with torch.no_grad():
        geometry.weight.zero_()
        geometry.weight[0, 0, 0] = 1.0  # offset -1: x of the referent, into channel 0
        geometry.weight[2, 0, 1] = 1.0  # offset +1: x of the referent, into channel 1
    # token 1 attends half to token 0 and half to token 2
    attention = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]])
    centroids = torch.tensor([[[0.2, 0.9], [0.5, 0.5], [0.8, 0.1]]])
    mass = torch.tensor([[1.0, 1.0, 0.5]])
    out = geometry(attention, centroids, mass)
    # the referent before token 1 (x 0.2) and the one after it (x 0.8, mass 0.5) stay apart
    torch.testing.assert_close(out[0, 1], torch.tensor([0.5 * 0.2, 0.5 * 0.5 * 0.8, 0.0]))
    # its own referent (offset 0) has a zero matrix here: nothing else reaches it
    assert out[0, 0].abs().sum() == 0
    assert fourier_features(centroids, geometry.freqs).shape == (1, 3, 6)


@torch.no_grad()
def test_zero_geometry_is_the_plain_head_and_only_later_blocks_have_it():
    tokens, tmask, nodes, nmask, pos = inputs()
    kwargs = dict(node_position=True, self_attention=True, attention_sink=True)
    torch.manual_seed(0)
    plain = ITMHead(D, 2, 2, 0.0, **kwargs).eval()
    torch.manual_seed(0)
    geo = ITMHead(D, 2, 2, 0.0, grounded_geometry=3, **kwargs).eval()
    assert geo.layers[0].geometry is None and geo.layers[1].geometry is not None
    geo.load_state_dict(plain.state_dict(), strict=False)
    geo.layers[1].geometry.weight.zero_()
    torch.testing.assert_close(
        geo(tokens, tmask, nodes, nmask, pos), plain(tokens, tmask, nodes, nmask, pos)
    )
    geo.layers[1].geometry.weight.normal_()
    a = geo(tokens, tmask, nodes, nmask, pos)
    assert (a - plain(tokens, tmask, nodes, nmask, pos)).abs().max() > 1e-3
    # moving a node moves the score: the geometry reads the centroids
    moved = pos.clone()
    moved[:, 0] = 1.0 - moved[:, 0]
    assert (geo(tokens, tmask, nodes, nmask, moved) - a).abs().min() > 0
    # padded tokens still reach nothing
    changed = tokens.clone()
    changed[1, 5:] = 50.0
    states = geo.token_states(tokens, tmask, nodes, nmask, pos)
    states2 = geo.token_states(changed, tmask, nodes, nmask, pos)
    torch.testing.assert_close(states2[1, :5], states[1, :5], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="node_pos"):
        geo(tokens, tmask, nodes, nmask, None)


def test_config_field_and_old_checkpoints():
    assert LEGACY_ITM_FIELDS["itm_grounded_geometry"] == 0
    with pytest.raises(ConfigError, match="itm_grounded_geometry"):
        GSHNConfig(itm_grounded_geometry=-1)
    with pytest.raises(ConfigError, match="itm_node_position"):
        GSHNConfig(itm_grounded_geometry=4, itm_node_position=False)


def test_a_model_built_with_it_trains_and_reloads(tmp_path, tiny_overrides, make_batch):
    from gshn_fixtures import one_step_and_reload

    overrides = {**tiny_overrides, "itm_grounded_geometry": 2}
    model, again = one_step_and_reload(overrides, make_batch, tmp_path / "m")
    grad = model.itm_head.layers[1].geometry.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert again.config.itm_grounded_geometry == 2
    torch.testing.assert_close(
        again.itm_head.layers[1].geometry.weight, model.itm_head.layers[1].geometry.weight
    )


def test_comparing_two_referents_is_learnt_with_it_and_not_without():
    # benchmarks/relation_probe.py at a small size: "is A left of B", read at a third token
    kwargs = dict(steps=150, dim=64, heads=4, eval_size=1000)
    torch.set_num_threads(1)
    without = relation_probe.train_probe("dx", geometry=0, **kwargs)
    with_geometry = relation_probe.train_probe("dx", geometry=4, **kwargs)
    assert without["accuracy"] < 0.6
    assert with_geometry["accuracy"] > 0.8
    # one referent alone is read either way: the positions reach the tokens
    assert relation_probe.train_probe("x", geometry=0, **kwargs)["accuracy"] > 0.9
