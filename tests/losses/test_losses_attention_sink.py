"""The ITM head's attention sink (a learned null node): it lets the head count nodes, its
attention weights match PyTorch's, and a model trained without it grows one on loading."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.model import GSHN
from neurogshn.model.crossmodal import CrossAttentionBlock, attention_weights
from neurogshn.model.itm import ITMHead

D, P, L = 16, 2, 3


def block(sink: bool) -> CrossAttentionBlock:
    torch.manual_seed(0)
    b = CrossAttentionBlock(D, heads=2, dropout=0.0, attention_sink=sink).eval()
    if sink:
        with torch.no_grad():  # a null value far from the node's, so its share is visible
            b.attn.bias_v.normal_(std=3.0)
    return b


def copies(node: torch.Tensor, n: int, pad_to: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copies of one node, padded to ``pad_to`` with random masked nodes."""
    nodes = torch.randn(P, pad_to, D)
    nodes[:, :n] = node
    mask = torch.zeros(P, pad_to, dtype=torch.bool)
    mask[:, :n] = True
    return nodes, mask


@torch.no_grad()
def test_without_a_sink_the_output_ignores_how_many_alike_nodes_there_are():
    h, tmask = torch.randn(P, L, D), torch.ones(P, L, dtype=torch.bool)
    node = torch.randn(D)
    b = block(False)
    two, four = (b(h, tmask, *copies(node, n))[0] for n in (2, 4))
    torch.testing.assert_close(two, four, atol=1e-5, rtol=0)


@torch.no_grad()
def test_with_a_sink_the_output_moves_monotonically_with_the_count():
    h, tmask = torch.randn(P, L, D), torch.ones(P, L, dtype=torch.bool)
    node = torch.randn(D)
    b = block(True)
    outs = [b(h, tmask, *copies(node, n))[0] for n in (1, 2, 3, 4, 5)]
    steps = [(outs[k + 1] - outs[k]).norm().item() for k in range(4)]
    assert min(steps) > 1e-3
    # the node's share n·e^a / (n·e^a + e^b) grows with n in every row of the first block
    shares = [
        attention_weights(b.attn, b.norm_q(h), b.norm_kv(copies(node, n)[0]), copies(node, n)[1])
        .sum(-1)
        .mean()
        .item()
        for n in (1, 2, 3, 4, 5)
    ]
    assert all(x < y for x, y in itertools.pairwise(shares)) and shares[-1] < 1.0


@torch.no_grad()
def test_attention_weights_match_pytorch_with_a_sink():
    b = block(True)
    q, kv = torch.randn(P, L, D), torch.randn(P, 5, D)
    mask = torch.ones(P, 5, dtype=torch.bool)
    mask[1, 3:] = False
    ours = attention_weights(b.attn, q, kv, mask)
    _, theirs = b.attn(q, kv, kv, key_padding_mask=~mask, need_weights=True)
    assert theirs.shape == (P, L, 6)  # the null key is the last column
    torch.testing.assert_close(ours, theirs[..., :5], atol=1e-6, rtol=0)
    assert ours[1, :, 3:].abs().sum().item() == 0.0
    assert (ours.sum(-1) < 1).all()


@torch.no_grad()
def test_itm_head_with_a_sink_scores_and_returns_attention():
    torch.manual_seed(0)
    head = ITMHead(D, heads=2, layers=2, dropout=0.0, node_position=True, attention_sink=True)
    head.eval()
    assert all(layer.attn.bias_k is not None for layer in head.layers)
    tokens, nodes = torch.randn(P, L, D), torch.randn(P, 4, D)
    tmask, nmask = torch.ones(P, L, dtype=torch.bool), torch.ones(P, 4, dtype=torch.bool)
    pos = torch.rand(P, 4, 2)
    logits, att = head(tokens, tmask, nodes, nmask, pos, return_attention=True)
    torch.testing.assert_close(logits, head(tokens, tmask, nodes, nmask, pos))
    assert logits.shape == (P, 2) and att.shape == (P, L, 4)


def test_a_saved_model_grows_a_sink_on_loading(tmp_path, tiny_overrides, make_batch, captions):
    torch.manual_seed(0)
    tiny_model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_attention_sink=False)
    assert not tiny_model.config.itm_attention_sink
    ckpt = tiny_model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        GSHN.from_pretrained(tmp_path / "nope", overrides={"itm_attention_sink": True})
    grown = GSHN.from_pretrained(ckpt, overrides={"itm_attention_sink": True}).eval()
    assert grown.config.itm_attention_sink
    new = {k for k in grown.state_dict() if k not in tiny_model.state_dict()}
    assert new and all(k.endswith((".attn.bias_k", ".attn.bias_v")) for k in new)
    old = tiny_model.state_dict()
    for k, v in grown.state_dict().items():
        if k in old:
            assert torch.equal(v, old[k]), k
    # the grown model is a working model; saving and loading it again is exact
    batch = make_batch()
    scores = grown.match_scores(batch, captions[: batch.num_graphs])
    again = GSHN.from_pretrained(grown.save_pretrained(tmp_path / "grown")).eval()
    torch.testing.assert_close(again.match_scores(batch, captions[: batch.num_graphs]), scores)
    # overrides cannot hide weights that no longer fit, nor name unknown fields
    with pytest.raises(CheckpointError, match="shape mismatch"):
        GSHN.from_pretrained(ckpt, overrides={"itm_attention_sink": True, "embed_dim": 48})
    with pytest.raises(ConfigError, match="no_such_field"):
        GSHN.from_pretrained(ckpt, overrides={"no_such_field": 1})
    # a config that asks for the sink, with weights that lack it, is refused (keys named)
    bad = tmp_path / "sink_cfg"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "itm_attention_sink": True}))
    with pytest.raises(CheckpointError, match="bias_k"):
        GSHN.from_pretrained(bad)
