"""ITC against a hand computation; CL and STL prefer true pairs over shuffled ones."""

from __future__ import annotations

import math

import pytest
import torch

from neurogshn.losses.contrastive import spatiotemporal_cl_loss, window_rates
from neurogshn.losses.itc import itc_loss, same_text_mask
from neurogshn.losses.stl import stl_loss
from neurogshn.model.heads import LogitScale, SpatioTemporalHead, SpikingTextProjector


def _ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_itc_hand_computed():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s2 = 2**-0.5
    txt = torch.tensor([[s2, s2], [0.0, 1.0]])
    neg = torch.tensor([[1.0, 0.0]])
    scale = torch.tensor(10.0)
    # image->text rows over [t0, t1, neg], text->image rows over [i0, i1]
    i2t = [[10 * s2, 0.0, 10.0], [10 * s2, 10.0, 0.0]]
    t2i = [[10 * s2, 10 * s2], [0.0, 10.0]]
    expected = 0.5 * ((_ce(i2t[0], 0) + _ce(i2t[1], 1)) / 2 + (_ce(t2i[0], 0) + _ce(t2i[1], 1)) / 2)
    got = itc_loss(img, txt, scale, neg)
    assert math.isclose(float(got), expected, rel_tol=1e-5)
    # without negatives
    i2t = [r[:2] for r in i2t]
    expected = 0.5 * ((_ce(i2t[0], 0) + _ce(i2t[1], 1)) / 2 + (_ce(t2i[0], 0) + _ce(t2i[1], 1)) / 2)
    assert math.isclose(float(itc_loss(img, txt, scale)), expected, rel_tol=1e-5)


def test_itc_duplicate_captions_are_not_negatives():
    caps = ["a", "b", "a"]
    mask = same_text_mask(caps, [*caps, "x"])
    assert mask.tolist() == [
        [True, False, True, False],
        [False, True, False, False],
        [True, False, True, False],
    ]
    img = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    txt = img.clone()
    txt[2] = txt[0]  # identical caption, identical embedding
    hn = torch.nn.functional.normalize(torch.randn(1, 4), dim=-1)
    loss_soft = itc_loss(img, txt, torch.tensor(50.0), hn, mask)
    loss_hard = itc_loss(img, txt, torch.tensor(50.0), hn)
    assert loss_soft < loss_hard


def test_logit_scale_clamped():
    s = LogitScale(0.07, max_scale=100.0)
    assert math.isclose(float(s().detach()), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        s.log_scale.fill_(10.0)
    assert math.isclose(float(s().detach()), 100.0, rel_tol=1e-5)


def _codes(n_nodes: int, t: int, h: int, seed: int) -> torch.Tensor:
    """Spike trains where each node has its own stable firing pattern over time."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(n_nodes, h, generator=gen) ** 3
    return (torch.rand(t, n_nodes, h, generator=gen) < p).float()


def test_window_rates_partition_time():
    spikes = _codes(5, 7, 3, 0)
    rates = window_rates(spikes, 3)
    assert len(rates) == 3
    # sizes 3, 2, 2: the weighted mean of window rates is the overall rate
    total = (rates[0] * 3 + rates[1] * 2 + rates[2] * 2) / 7
    torch.testing.assert_close(total, spikes.mean(0))


def test_cl_positive_pairs_beat_shuffled():
    torch.manual_seed(0)
    t, n, h = 8, 24, 32
    spikes = _codes(n, t, h, 1)
    batch = torch.arange(n) // 4
    head = SpatioTemporalHead(h, 16)
    with torch.no_grad():  # identity-like head: the loss then measures the codes themselves
        head.net[0].weight.copy_(torch.eye(h))
        head.net[0].bias.zero_()
        head.net[2].weight.copy_(torch.eye(16, h))
        head.net[2].bias.zero_()
    real = spatiotemporal_cl_loss(spikes, batch, 6, head, windows=2, temperature=0.1)
    shuffled = spikes.clone()
    half = t // 2
    perm = torch.randperm(n)
    shuffled[half:] = spikes[half:, perm]  # the second window comes from other nodes
    fake = spatiotemporal_cl_loss(shuffled, batch, 6, head, windows=2, temperature=0.1)
    assert real < fake - 0.5


def test_cl_gradient_and_max_nodes():
    spikes = _codes(50, 4, 8, 2).requires_grad_(True)
    head = SpatioTemporalHead(8, 4)
    loss = spatiotemporal_cl_loss(spikes, torch.arange(50) // 10, 5, head, max_nodes=16)
    loss.backward()
    assert spikes.grad is not None and torch.isfinite(loss)


def test_stl_matching_codes_beat_shuffled():
    torch.manual_seed(0)
    b, n, length, h = 6, 5, 7, 32
    gen = torch.Generator().manual_seed(3)
    node = (torch.rand(b, n, h, generator=gen) < 0.2).float()
    # each caption's tokens are the codes of its image's nodes (plus a padding slot)
    tokens = torch.zeros(b, length, h)
    tokens[:, :n] = node
    tmask = torch.zeros(b, length, dtype=torch.bool)
    tmask[:, :n] = True
    nmask = torch.ones(b, n, dtype=torch.bool)
    nmask[0, 3:] = False
    scale = torch.tensor(20.0)
    for w in (0.0, 0.5, 1.0):
        real = stl_loss(node, nmask, tokens, tmask, scale, token_weight=w)
        perm = torch.tensor([1, 2, 3, 4, 5, 0])
        fake = stl_loss(node, nmask, tokens[perm], tmask[perm], scale, token_weight=w)
        assert real < fake - 1.0, w


def test_spiking_text_projector_binary_and_differentiable():
    proj = SpikingTextProjector(16, 12, time_steps=5)
    x = torch.randn(3, 4, 16, requires_grad=True)
    spikes, rates = proj(x)
    assert spikes.shape == (5, 3, 4, 12)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(rates, spikes.mean(0))
    rates.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_itm_pairs_and_learnability():
    from neurogshn.losses.itm import itm_loss
    from neurogshn.model.itm import ITMHead

    torch.manual_seed(0)
    b, n, length, d = 4, 3, 5, 8
    head = ITMHead(d, heads=2, layers=1, dropout=0.0)
    seen = {}
    forward = head.forward

    def spy(tokens, token_mask, nodes, node_mask, node_pos=None):
        seen["pairs"] = tokens.shape[0]
        return forward(tokens, token_mask, nodes, node_mask, node_pos)

    head.forward = spy
    nodes = torch.randn(b, n, d)
    nmask = torch.ones(b, n, dtype=torch.bool)
    tokens = torch.randn(b, length, d)
    tmask = torch.ones(b, length, dtype=torch.bool)
    same = torch.eye(b, dtype=torch.bool)
    neg = torch.randn(2, length, d)
    owner = torch.tensor([0, 2])
    loss, acc, _ = itm_loss(
        head, nodes, nmask, tokens, tmask, same, torch.randn(b, b), neg, tmask[:2], owner
    )
    # B positives + B hard captions + B hard images + 2 data negatives
    assert seen["pairs"] == 3 * b + 2
    assert torch.isfinite(loss) and 0.0 <= float(acc) <= 1.0
    # captions 0 and 1 identical: neither is mined as the other's negative
    same[0, 1] = same[1, 0] = True
    for _ in range(20):
        from neurogshn.losses.itm import _sample_negatives

        picks = _sample_negatives(torch.zeros(b, b), same)
        assert picks[0] not in (0, 1) and picks[1] not in (0, 1)


def test_itm_head_needs_positions_and_uses_them():
    from neurogshn.model.itm import ITMHead

    torch.manual_seed(0)
    d = 8
    head = ITMHead(d, heads=2, layers=2, dropout=0.0, node_position=True, self_attention=True)
    tokens, tmask = torch.randn(2, 5, d), torch.ones(2, 5, dtype=torch.bool)
    nodes, nmask = torch.randn(2, 3, d), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="node_pos"):
        head(tokens, tmask, nodes, nmask)
    pos = torch.rand(2, 3, 2)
    a = head.score(tokens, tmask, nodes, nmask, pos)
    b = head.score(tokens, tmask, nodes, nmask, pos.flip(-1))
    assert a.shape == (2,) and not torch.allclose(a, b)
    # padded tokens and padded nodes do not change the score
    tm = tmask.clone()
    tm[:, -1] = False
    nm = nmask.clone()
    nm[:, -1] = False
    t2 = tokens.clone()
    t2[:, -1] = 100.0
    n2 = nodes.clone()
    n2[:, -1] = -100.0
    torch.testing.assert_close(
        head.score(tokens, tm, nodes, nm, pos), head.score(t2, tm, n2, nm, pos)
    )


def test_itm_balanced_pairs_without_batch_negatives():
    from neurogshn.losses.itm import itm_loss
    from neurogshn.model.itm import ITMHead

    torch.manual_seed(0)
    b, d = 4, 8
    head = ITMHead(d, heads=2, layers=1, dropout=0.0, node_position=True, self_attention=True)
    seen = {}
    forward = head.forward

    def spy(tokens, token_mask, nodes, node_mask, node_pos=None):
        seen["pairs"] = tokens.shape[0]
        seen["pos"] = node_pos
        return forward(tokens, token_mask, nodes, node_mask, node_pos)

    head.forward = spy
    tmask = torch.ones(b, 5, dtype=torch.bool)
    loss, _, _ = itm_loss(
        head,
        torch.randn(b, 3, d),
        torch.ones(b, 3, dtype=torch.bool),
        torch.randn(b, 5, d),
        tmask,
        torch.eye(b, dtype=torch.bool),
        None,
        torch.randn(b, 5, d),
        tmask,
        torch.arange(b),
        torch.rand(b, 3, 2),
    )
    assert seen["pairs"] == 2 * b and seen["pos"].shape == (2 * b, 3, 2)
    assert torch.isfinite(loss)
