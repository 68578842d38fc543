"""Token positions of the ITM head: word order reaches the score only through them; the
first-block attention it returns; checkpoints written before the field existed."""

from __future__ import annotations

import json

import pytest
import torch

from neurogshn.losses.itm import itm_loss
from neurogshn.model import GSHN
from neurogshn.model.crossmodal import CrossModalEncoder
from neurogshn.model.itm import ITMHead
from neurogshn.model.positions import TokenPositionEmbedding

D, P, L, N = 16, 3, 6, 5


def make_head(token_position: bool, **kwargs) -> ITMHead:
    torch.manual_seed(0)
    head = ITMHead(
        D,
        heads=2,
        layers=2,
        dropout=0.0,
        node_position=True,
        self_attention=True,
        token_position=token_position,
        **kwargs,
    )
    with torch.no_grad():  # the default init (std 0.02) is a small effect: make it visible
        if head.token_position is not None:
            head.token_position.weight.normal_()
    return head.eval()


def inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(P, L, D, generator=gen)
    token_mask = torch.ones(P, L, dtype=torch.bool)
    nodes = torch.randn(P, N, D, generator=gen)
    node_mask = torch.ones(P, N, dtype=torch.bool)
    node_mask[1, 3:] = False
    pos = torch.rand(P, N, 2, generator=gen)
    return tokens, token_mask, nodes, node_mask, pos


PERM = torch.tensor([3, 0, 5, 1, 4, 2])


@torch.no_grad()
def test_token_positions_make_the_score_order_sensitive():
    tokens, tmask, nodes, nmask, pos = inputs()
    head = make_head(True)
    a = head.score(tokens, tmask, nodes, nmask, pos)
    b = head.score(tokens[:, PERM], tmask, nodes, nmask, pos)
    assert (a - b).abs().min().item() > 1e-3


@torch.no_grad()
def test_without_token_positions_the_head_sees_a_set_of_tokens():
    tokens, tmask, nodes, nmask, pos = inputs()
    head = make_head(False)
    assert head.token_position is None
    logits, att = head(tokens, tmask, nodes, nmask, pos, return_attention=True)
    logits_p, att_p = head(tokens[:, PERM], tmask, nodes, nmask, pos, return_attention=True)
    torch.testing.assert_close(logits_p, logits, atol=1e-5, rtol=0)
    # the attention is permutation-equivariant over tokens
    torch.testing.assert_close(att_p, att[:, PERM], atol=1e-5, rtol=0)


@torch.no_grad()
def test_returned_attention_is_the_first_blocks_over_real_nodes():
    tokens, tmask, nodes, nmask, pos = inputs()
    head = make_head(True)
    plain = head(tokens, tmask, nodes, nmask, pos)
    logits, att = head(tokens, tmask, nodes, nmask, pos, return_attention=True)
    torch.testing.assert_close(logits, plain)
    assert att.shape == (P, L, N)
    torch.testing.assert_close(att.sum(-1), torch.ones(P, L))
    assert att[1, :, 3:].abs().sum().item() == 0.0  # masked nodes get no attention
    # it is the first block's: recompute it from the block's own inputs
    h = tokens + head.token_position(L)
    kv = nodes + head.position(pos)
    block = head.layers[0]
    q = block.norm_self(h)
    h = h + block.self_attn(q, q, q, need_weights=False)[0]
    kvn = block.norm_kv(kv)
    _, want = block.attn(block.norm_q(h), kvn, kvn, key_padding_mask=~nmask)
    torch.testing.assert_close(att, want)


def test_itm_loss_returns_the_positives_attention():
    tokens, tmask, nodes, nmask, pos = inputs()
    head = make_head(True)
    same = torch.eye(P, dtype=torch.bool)
    # hard negatives longer than the captions: the caption side gets padded
    negs = torch.randn(2, L + 3, D)
    neg_mask = torch.ones(2, L + 3, dtype=torch.bool)
    owner = torch.tensor([0, 2])
    result = itm_loss(
        head, nodes, nmask, tokens, tmask, same, None, negs, neg_mask, owner, pos, True
    )
    assert result.attention is not None and result.attention.shape == (P, L, N)
    with torch.no_grad():
        _, want = head(tokens, tmask, nodes, nmask, pos, return_attention=True)
    torch.testing.assert_close(result.attention.detach(), want, atol=1e-5, rtol=0)
    assert result.attention.requires_grad
    plain = itm_loss(head, nodes, nmask, tokens, tmask, same, None, negs, neg_mask, owner, pos)
    assert plain.attention is None
    torch.testing.assert_close(plain.loss, result.loss)


def test_position_embedding_length_limit():
    emb = TokenPositionEmbedding(8, max_positions=4)
    assert emb(4).shape == (4, 8) and emb(0).shape == (0, 8)
    torch.testing.assert_close(emb(3), emb.weight[:3])
    with pytest.raises(ValueError, match="5 tokens but the position embedding has 4"):
        emb(5)
    head = ITMHead(8, heads=2, dropout=0.0, token_position=True, max_tokens=4)
    with pytest.raises(ValueError, match="position embedding"):
        head(torch.randn(1, 5, 8), torch.ones(1, 5), torch.randn(1, 2, 8), torch.ones(1, 2))
    # without token positions there is no limit
    head = ITMHead(8, heads=2, dropout=0.0, token_position=False, max_tokens=4)
    assert head(torch.randn(1, 5, 8), torch.ones(1, 5), torch.randn(1, 2, 8), torch.ones(1, 2))[
        0
    ].shape == (2,)


def test_reset_parameters_resets_the_position_embedding():
    enc = CrossModalEncoder(8, heads=2, token_position=True, max_tokens=7)
    with torch.no_grad():
        enc.token_position.weight.fill_(3.0)
    enc.reset_parameters()
    w = enc.token_position.weight
    assert w.shape == (7, 8) and w.abs().max().item() < 0.2 and w.std().item() > 0.005


# ---------------------------------------------------------------- checkpoints


def test_gshn_head_has_token_positions_sized_to_the_tokenizer(tiny_model):
    head = tiny_model.itm_head
    assert tiny_model.config.itm_token_position is True
    assert head.token_position is not None
    assert head.token_position.weight.shape == (
        tiny_model.config.text_max_length,
        tiny_model.config.embed_dim,
    )


def test_old_checkpoint_without_the_field_loads_without_token_positions(
    tiny_overrides, tmp_path, make_batch, captions
):
    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_token_position=False).eval()
    assert model.itm_head.token_position is None
    model.save_pretrained(tmp_path)
    cfg_file = tmp_path / "config.json"
    raw = json.loads(cfg_file.read_text())
    assert raw.pop("itm_token_position") is False
    cfg_file.write_text(json.dumps(raw))  # as written before the field existed

    loaded = GSHN.from_pretrained(tmp_path).eval()
    assert loaded.config.itm_token_position is False
    assert loaded.itm_head.token_position is None
    graphs = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.match_scores(graphs, captions), model.match_scores(graphs, captions)
        )


def test_checkpoint_with_token_positions_round_trips(tiny_model, tmp_path, make_batch, captions):
    model = tiny_model.eval()
    with torch.no_grad():
        model.itm_head.token_position.weight.normal_()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["itm_token_position"] is True
    loaded = GSHN.from_pretrained(tmp_path).eval()
    assert loaded.config.itm_token_position is True
    torch.testing.assert_close(
        loaded.itm_head.token_position.weight, model.itm_head.token_position.weight
    )
    graphs = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.match_scores(graphs, captions), model.match_scores(graphs, captions)
        )


def test_returned_attention_has_no_dropout_in_training_mode():
    from neurogshn.model.crossmodal import CrossAttentionBlock

    torch.manual_seed(0)
    block = CrossAttentionBlock(16, 2, dropout=0.5).train()
    h, nodes = torch.randn(4, 6, 16), torch.randn(4, 5, 16)
    node_mask = torch.ones(4, 5, dtype=torch.bool)
    node_mask[1, 3:] = False
    _, w = block(h, torch.ones(4, 6, dtype=torch.bool), nodes, node_mask, need_attention=True)
    # probabilities over the real nodes, exactly (dropout would scale and zero entries)
    assert torch.allclose(w.sum(-1), torch.ones(4, 6), atol=1e-6)
    assert float(w.detach()[1, :, 3:].abs().max()) == 0.0
    block.eval()
    _, w_eval = block(h, torch.ones(4, 6, dtype=torch.bool), nodes, node_mask, True)
    assert torch.allclose(w, w_eval, atol=1e-6)
