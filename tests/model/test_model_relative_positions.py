"""Relative token positions in the cross-encoder's self-attention: the bias by offset, its
zero start, the padding it keeps out, and what it makes the head able to tell apart."""

from __future__ import annotations

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.model.config import LEGACY_ITM_FIELDS, GSHNConfig
from neurogshn.model.crossmodal import CrossAttentionBlock
from neurogshn.model.itm import ITMHead
from neurogshn.model.positions import RelativePositionBias

D, P, L, N = 16, 3, 7, 4


def inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(P, L, D, generator=gen)
    token_mask = torch.ones(P, L, dtype=torch.bool)
    token_mask[1, 5:] = False
    nodes = torch.randn(P, N, D, generator=gen)
    node_mask = torch.ones(P, N, dtype=torch.bool)
    pos = torch.rand(P, N, 2, generator=gen)
    return tokens, token_mask, nodes, node_mask, pos


def test_bias_depends_on_the_clipped_offset_only():
    bias = RelativePositionBias(heads=2, max_distance=2)
    with torch.no_grad():
        bias.weight.copy_(torch.arange(10, dtype=torch.float32).view(2, 5))
    b = bias(5)
    assert b.shape == (2, 5, 5)
    # row t, column s holds weight[h, clip(s - t, -2, 2) + 2]
    assert b[0, 0].tolist() == [2.0, 3.0, 4.0, 4.0, 4.0]
    assert b[0, 4].tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert b[1, 2].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    # the same offset has the same bias anywhere in the caption
    assert b[0, 1, 2] == b[0, 3, 4] == 3.0


@torch.no_grad()
def test_a_zero_bias_is_the_plain_block_and_padding_stays_out():
    tokens, tmask, nodes, nmask, _ = inputs()
    torch.manual_seed(0)
    plain = CrossAttentionBlock(D, 2, 0.0, self_attention=True).eval()
    torch.manual_seed(0)
    relative = CrossAttentionBlock(D, 2, 0.0, self_attention=True, relative_positions=3).eval()
    a, _ = plain(tokens, tmask, nodes, nmask)
    b, _ = relative(tokens, tmask, nodes, nmask)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    # with a bias, what a padded token holds still reaches no real token
    relative.relative.weight.normal_()
    changed = tokens.clone()
    changed[1, 5:] = 100.0
    b1, _ = relative(tokens, tmask, nodes, nmask)
    b2, _ = relative(changed, tmask, nodes, nmask)
    torch.testing.assert_close(b2[1, :5], b1[1, :5], atol=1e-5, rtol=0)


@torch.no_grad()
def test_the_bias_tells_apart_what_sits_before_and_after_a_token():
    # Without token-index embeddings the head sees a set of tokens; with a relative bias that
    # favours the left neighbour, moving a token changes what its neighbours read.
    tokens, tmask, nodes, nmask, pos = inputs()
    torch.manual_seed(0)
    head = ITMHead(D, 2, 1, 0.0, node_position=True, self_attention=True, relative_positions=2)
    head.eval()
    head.layers[0].relative.weight[:, 1] = 5.0  # offset -1: attend to the previous token
    swapped = tokens.clone()
    swapped[:, [2, 4]] = tokens[:, [4, 2]]
    a = head.score(tokens, tmask, nodes, nmask, pos)
    b = head.score(swapped, tmask, nodes, nmask, pos)
    assert (a - b).abs().min().item() > 1e-4
    head.layers[0].relative.weight.zero_()
    a0 = head.score(tokens, tmask, nodes, nmask, pos)
    b0 = head.score(swapped, tmask, nodes, nmask, pos)
    torch.testing.assert_close(a0, b0, atol=1e-5, rtol=0)


def test_config_field_and_old_checkpoints():
    assert LEGACY_ITM_FIELDS["itm_relative_positions"] == 0
    with pytest.raises(ConfigError, match="itm_relative_positions"):
        GSHNConfig(itm_relative_positions=-1)
    head = ITMHead(D, 2, 2, 0.0, self_attention=True, relative_positions=4)
    keys = [k for k in head.state_dict() if "relative" in k]
    assert keys == ["layers.0.relative.weight", "layers.1.relative.weight"]
    # without self-attention there is nothing to bias
    assert ITMHead(D, 2, 2, 0.0, relative_positions=4).layers[0].relative is None


def test_a_model_built_with_it_trains_and_reloads(tmp_path, tiny_overrides, make_batch):
    from gshn_fixtures import one_step_and_reload

    overrides = {**tiny_overrides, "itm_relative_positions": 3}
    model, again = one_step_and_reload(overrides, make_batch, tmp_path / "m")
    grads = [m.relative.weight.grad for m in model.itm_head.layers]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert again.config.itm_relative_positions == 3
    torch.testing.assert_close(
        again.itm_head.layers[0].relative.weight, model.itm_head.layers[0].relative.weight
    )
