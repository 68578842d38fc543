"""GSHN forward: shapes, dtypes, binary spikes, gradients, mode switches, edge cases."""

from __future__ import annotations

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.model import GSHN


def test_encode_image_shapes_and_spikes(tiny_model, make_batch):
    batch = make_batch((4, 1, 3, 6))
    enc = tiny_model.encode_image(batch)
    c = tiny_model.config
    n = batch.num_nodes
    assert enc.image_embeds.shape == (4, c.embed_dim)
    assert enc.image_embeds.dtype == torch.float32
    torch.testing.assert_close(enc.image_embeds.norm(dim=-1), torch.ones(4))
    assert enc.node_embeds.shape == (n, c.embed_dim)
    assert enc.node_batch.tolist() == batch.batch.tolist()
    assert len(enc.spikes) == len(c.snn_hidden)
    for s, h in zip(enc.spikes, c.snn_hidden, strict=True):
        assert s.shape == (c.time_steps, n, h)
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert enc.snn_latent.shape == (n, c.snn_hidden[-1])
    levels = enc.snn_latent * c.time_steps
    torch.testing.assert_close(levels, levels.round())
    assert enc.fusion_ratio is not None and tiny_model.fusion_ratio == pytest.approx(1.0)
    assert 0.0 < float(enc.spike_rates[0]) < 1.0
    assert enc.voltages is None
    tiny_model.eval()
    rec = tiny_model.encode_image(batch, record_voltages=True)
    assert [v.shape for v in rec.voltages] == [s.shape for s in rec.spikes]


def test_encode_text_shapes(tiny_model, captions):
    enc = tiny_model.encode_text(captions)
    d = tiny_model.config.embed_dim
    assert enc.text_embeds.shape == (4, d)
    torch.testing.assert_close(enc.text_embeds.norm(dim=-1), torch.ones(4))
    b, length, dd = enc.token_embeds.shape
    assert (b, dd) == (4, d) and enc.attention_mask.shape == (4, length)
    assert enc.attention_mask.dtype == torch.bool
    # content tokens exclude [CLS]/[SEP] and padding
    assert (enc.token_mask.sum(1) == enc.attention_mask.sum(1) - 2).all()
    with pytest.raises(TypeError):
        tiny_model.encode_text("a single string")


def test_single_data_graph_only_global_and_no_edges(tiny_model, make_batch):
    tiny_model.eval()
    lonely = make_batch((1,))
    enc = tiny_model.encode_image(lonely.get_example(0))
    assert enc.image_embeds.shape == (1, tiny_model.config.embed_dim)
    assert torch.isfinite(enc.image_embeds).all()
    no_edges = make_batch((5, 2), edges=False)
    assert no_edges.edge_index.shape[1] == 0
    enc = tiny_model.encode_image(no_edges)
    assert torch.isfinite(enc.node_embeds).all()


def test_gradients_reach_both_branches_and_ratio(tiny_model, make_batch, captions):
    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective

    out = PretrainingObjective()(tiny_model, PretrainBatch(make_batch(), captions, [None] * 4))
    out["loss"].backward()
    for name in (
        "spiking_encoder.layers.0.weight",
        "spiking_encoder.layers.1.weight",
        "gat.convs.0.lin_l.weight",
        "fusion.ratio",
        "snn_readout.linear.weight",
    ):
        p = dict(tiny_model.named_parameters())[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    top = tiny_model.text_encoder.top_layers[0]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())
    # the frozen lower text layers get no gradient and are not trainable
    low = tiny_model.text_encoder.backbone.encoder.layer[0]
    assert all(not p.requires_grad and p.grad is None for p in low.parameters())


@pytest.mark.parametrize(
    "mode,absent,present",
    [
        ("gat_only", ("spiking_encoder", "snn_readout", "fusion", "snn_input_norm"), ("gat",)),
        ("snn_only", ("gat", "fusion"), ("spiking_encoder", "snn_readout")),
    ],
)
def test_mode_removes_branch(mode, absent, present, tiny_overrides, make_batch):
    overrides = dict(tiny_overrides, mode=mode)
    if mode == "gat_only":
        overrides.update(cl_weight=0.0, stl_weight=0.0)
    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **overrides).eval()
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    for a in absent:
        assert a not in names and not hasattr(model, a)
    for p in present:
        assert p in names
    batch = make_batch()
    enc = model.encode_image(batch)
    assert enc.fusion_ratio is None and model.fusion_ratio is None
    if mode == "gat_only":
        assert enc.spikes == [] and enc.snn_latent is None
    else:
        assert len(enc.spikes) == 2
    enc.image_embeds.sum().backward()
    used = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith(present[0]) for n in used)


def test_full_mode_depends_on_both_branches(tiny_model, make_batch):
    model = tiny_model.eval()
    batch = make_batch()
    base = model.encode_image(batch).image_embeds
    for name in ("gat.input_proj.weight", "snn_readout.linear.weight"):
        p = dict(model.named_parameters())[name]
        with torch.no_grad():
            p.add_(0.5)
        assert not torch.allclose(model.encode_image(batch).image_embeds, base), name
        with torch.no_grad():
            p.sub_(0.5)


def test_removed_branch_cannot_affect_output(tiny_overrides, make_batch):
    torch.manual_seed(0)
    full = GSHN.from_config_name("gshn-tiny", **tiny_overrides)
    gat_only = GSHN.from_config_name(
        "gshn-tiny", **tiny_overrides, mode="gat_only", cl_weight=0.0, stl_weight=0.0
    )
    # copy the shared weights: gat_only output then equals full's with r = 0
    gat_only.load_state_dict(full.state_dict(), strict=False)
    full.eval(), gat_only.eval()
    with torch.no_grad():
        full.fusion.ratio.zero_()
    batch = make_batch()
    torch.testing.assert_close(
        gat_only.encode_image(batch).image_embeds, full.encode_image(batch).image_embeds
    )


def test_wrong_feature_size_is_a_clear_error(tiny_model, make_batch):
    batch = make_batch()
    batch.x = batch.x[:, :-1]
    with pytest.raises(ConfigError, match="node features"):
        tiny_model.encode_image(batch)


def test_text_cache_memoises_and_is_exact(tiny_model, captions):
    te = tiny_model.text_encoder
    te.eval()
    te.clear_cache()
    a = tiny_model.encode_text(captions).text_embeds
    assert te.cache_len == len(set(captions))
    # a different batch composition returns bitwise-identical embeddings for the same text
    b = tiny_model.encode_text([captions[2], "something else entirely here", captions[0]])
    torch.testing.assert_close(b.text_embeds[0], a[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(b.text_embeds[2], a[0], rtol=0, atol=1e-6)
    # the memoised frozen part equals running the full transformer (no top layers cached)
    full = te.backbone(**te.tokenizer(captions[:1], return_tensors="pt")).last_hidden_state
    te.clear_cache()
    entry = te.frozen_states(captions[:1])[0]
    h = entry.hidden.unsqueeze(0)
    for layer in te.top_layers:
        h = layer(h)
        h = h[0] if isinstance(h, tuple) else h
    torch.testing.assert_close(h, full, rtol=1e-5, atol=1e-5)
    # loading weights invalidates the memo
    tiny_model.load_state_dict(tiny_model.state_dict())
    assert te.cache_len == 0


def test_word_order_changes_text_embedding(tiny_model):
    enc = tiny_model.encode_text(
        ["a red circle left of a blue square", "a blue square left of a red circle"]
    )
    assert not torch.allclose(enc.text_embeds[0], enc.text_embeds[1])


def test_fully_frozen_text(tiny_overrides):
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, text_trainable_layers=0)
    te = model.text_encoder
    assert te.top_layers == []
    assert all(not p.requires_grad for p in te.backbone.parameters())
    assert te.token_proj.weight.requires_grad
    assert model.encode_text(["a red circle"]).text_embeds.shape == (1, 32)


def test_transformer_conv_option(tiny_overrides, make_batch):
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, gat_conv="transformer").eval()
    assert type(model.gat.convs[0]).__name__ == "TransformerConv"
    enc = model.encode_image(make_batch((3, 1), edges=False))
    assert torch.isfinite(enc.image_embeds).all()
    enc = model.encode_image(make_batch())
    enc.image_embeds.sum().backward()
    assert model.gat.convs[0].lin_edge.weight.grad is not None


def test_match_scores_itm_and_itc(tiny_model, make_batch, captions):

    tiny_model.eval()
    graphs = make_batch()
    with torch.no_grad():
        itm = tiny_model.match_scores(graphs, captions)
        auto = tiny_model.match_scores(graphs, captions, scorer="auto")
        itc = tiny_model.match_scores(graphs, captions, scorer="itc")
        image, text = tiny_model.encode_image(graphs), tiny_model.encode_text(captions)
    assert itm.shape == itc.shape == (4,)
    torch.testing.assert_close(itm, auto)
    torch.testing.assert_close(itc, (image.image_embeds * text.text_embeds).sum(-1))
    with torch.no_grad():
        pmi = tiny_model.mlm_evidence(image, list(captions))[:, 0]
        itm_only = tiny_model.itm_scores(image, text)
    # the match score is the ITM logit difference plus lambda x the mean PMI of the words
    weight = tiny_model.config.itm_mlm_score_weight
    assert weight > 0
    torch.testing.assert_close(itm, itm_only + weight * pmi)
    torch.testing.assert_close(itm, tiny_model.itm_scores(image, text, list(captions)))
    assert bool((pmi != 0).all())
    # the ITM score sees node positions: moving the nodes changes it
    moved = graphs.clone()
    moved.pos = 1.0 - moved.pos
    with torch.no_grad():
        assert not torch.allclose(itm, tiny_model.match_scores(moved, captions))
    with pytest.raises(ValueError, match="scorer"):
        tiny_model.match_scores(graphs, captions, scorer="cosine")
    with pytest.raises(ValueError, match="texts"):
        tiny_model.match_scores(graphs, captions[:3])


def test_match_scores_without_itm_head_is_cosine(tiny_overrides, make_batch, captions):
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_weight=0.0).eval()
    graphs = make_batch()
    with torch.no_grad():
        s = model.match_scores(graphs, captions)
        image, text = model.encode_image(graphs), model.encode_text(captions)
    torch.testing.assert_close(s, (image.image_embeds * text.text_embeds).sum(-1))
    with pytest.raises(ConfigError, match="ITM head"):
        model.match_scores(graphs, captions, scorer="itm")
