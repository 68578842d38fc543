"""Phrase-grounding term of the ITM head: token targets from character spans, the loss and its
accuracy, and its place in the pretraining objective."""

from __future__ import annotations

import math

import pytest
import torch

import neurogshn.losses.objective as objective_mod
from neurogshn.losses.grounding import GroundingTargets, grounding_loss, grounding_targets
from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
from neurogshn.model import GSHN

# caption 0 "a red circle left":  [CLS] a red circle left [SEP]
# caption 1 "the bluesquare!":    [CLS] the blue square ! [SEP]  ("square" straddles 4..10)
OFFSETS = [
    [(0, 0), (0, 1), (2, 5), (6, 12), (13, 17), (0, 0)],
    [(0, 0), (0, 3), (4, 8), (8, 14), (14, 15), (0, 0)],
    [(0, 0), (0, 4), (0, 0)],
    [(0, 0), (0, 4), (5, 9), (0, 0)],
]
PHRASES = [
    [(2, 12, (1,))],  # "red circle": tokens 2 and 3, one node
    [(4, 10, (2, 3)), (0, 3, (1,))],  # "blue" (2 nodes, one group); "square" straddles the end
    None,  # no grounding for this caption
    [(5, 9, ())],  # a phrase without nodes gives no target
]


def test_targets_from_character_spans():
    t = grounding_targets(OFFSETS, PHRASES)
    assert isinstance(t, GroundingTargets)
    assert t.rows.tolist() == [0, 0, 1, 1, 1]
    assert t.tokens.tolist() == [2, 3, 2, 2, 1]
    assert t.nodes.tolist() == [1, 1, 2, 3, 1]
    assert t.group.tolist() == [0, 1, 2, 2, 3]  # both nodes of "blue" share a group
    assert t.num_groups == 4
    assert all(v.dtype == torch.long for v in (t.rows, t.tokens, t.nodes, t.group))


def test_special_tokens_and_straddling_tokens_are_excluded():
    # a phrase from 0: the special tokens' (0, 0) must not count as inside it
    t = grounding_targets([[(0, 0), (0, 3), (3, 7), (0, 0)]], [[(0, 5, (4,))]])
    assert t.tokens.tolist() == [1] and t.num_groups == 1
    # a token starting before the phrase is excluded as well
    assert grounding_targets([[(0, 0), (1, 6), (0, 0)]], [[(2, 6, (1,))]]) is None


def test_targets_none_when_nothing_is_grounded():
    assert grounding_targets(OFFSETS[2:], PHRASES[2:]) is None
    assert grounding_targets([[(0, 0), (0, 1)]], [[(3, 9, (1,))]]) is None  # no token in span
    assert grounding_targets([], []) is None
    with pytest.raises(ValueError):
        grounding_targets(OFFSETS, PHRASES[:2])  # one entry per caption


def test_loss_and_accuracy_by_hand():
    # P=2 pairs, L=4 tokens, N=4 nodes; rows sum to 1
    attention = torch.full((2, 4, 4), 0.25)
    attention[0, 2] = torch.tensor([0.1, 0.6, 0.2, 0.1])  # group 0: target node 1 is argmax
    attention[0, 3] = torch.tensor([0.5, 0.3, 0.1, 0.1])  # group 1: target 1 is not argmax
    attention[1, 2] = torch.tensor([0.4, 0.1, 0.3, 0.2])  # group 2: targets 2, 3; argmax 0
    attention[1, 1] = torch.tensor([0.2, 0.2, 0.2, 0.4])  # group 3: target 1
    attention.requires_grad_(True)
    t = grounding_targets(OFFSETS, PHRASES)
    loss, acc = grounding_loss(attention, t)
    masses = [0.6, 0.3, 0.3 + 0.2, 0.2]
    expected = -sum(math.log(m + 1e-6) for m in masses) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == pytest.approx(1 / 4)
    assert not acc.requires_grad
    loss.backward()
    grad = attention.grad
    # d loss / d A[r,t,n] = -1 / (G (mass + eps)) on the targets, 0 elsewhere
    want = torch.zeros_like(grad)
    for (r, tok, n), m in zip(
        [(0, 2, 1), (0, 3, 1), (1, 2, 2), (1, 2, 3), (1, 1, 1)],
        [0.6, 0.3, 0.5, 0.5, 0.2],
        strict=True,
    ):
        want[r, tok, n] = -1.0 / (4 * (m + 1e-6))
    torch.testing.assert_close(grad, want)


def test_accuracy_counts_a_token_once_when_any_target_is_argmax():
    attention = torch.zeros(1, 2, 3)
    attention[0, 1] = torch.tensor([0.1, 0.2, 0.7])
    t = grounding_targets([[(0, 0), (0, 4)]], [[(0, 4, (1, 2))]])
    loss, acc = grounding_loss(attention, t)
    assert acc.item() == 1.0
    assert loss.item() == pytest.approx(-math.log(0.9 + 1e-6), rel=1e-6)


def test_loss_trains_attention_towards_the_targets():
    """Gradient descent on logits through a softmax raises the target mass and the accuracy."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4, requires_grad=True)
    t = grounding_targets(OFFSETS, PHRASES)
    opt = torch.optim.SGD([logits], lr=1.0)
    first = None
    for _ in range(50):
        loss, acc = grounding_loss(logits.softmax(-1), t)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert acc.item() == 1.0


# ---------------------------------------------------------------- in the pretraining objective

GRAPH_SIZES = (4, 1, 3, 6)
CAPTIONS = [
    "a red circle left of a blue square",
    "a blue square left of a red circle",
    "a small green triangle above the grass",
    "a large yellow cross below a purple diamond",
]
GROUNDINGS = [
    ((2, 12, (1,)), (23, 34, (2, 3))),  # "red circle" -> node 1; "blue square" -> nodes 2, 3
    (),  # a graph of a global node only: nothing to ground
    ((2, 22, (1,)), (33, 38, (2,))),  # "small green triangle", "grass"
    None,
]


def test_caption_spans_are_what_the_groundings_say():
    assert CAPTIONS[0][2:12] == "red circle" and CAPTIONS[0][23:34] == "blue square"
    assert CAPTIONS[2][2:22] == "small green triangle" and CAPTIONS[2][33:38] == "grass"


def test_token_offsets_align_with_token_embeddings(tiny_model):
    enc = tiny_model.text_encoder
    offsets = enc.token_offsets(CAPTIONS)
    text = tiny_model.encode_text(CAPTIONS)
    for i, offs in enumerate(offsets):
        n = int(text.attention_mask[i].sum())
        assert len(offs) == n
        special = [k for k, (a, b) in enumerate(offs) if b == a]
        assert special == [0, n - 1]
        content = text.token_mask[i].nonzero().squeeze(-1).tolist()
        assert content == list(range(1, n - 1))
    words = [CAPTIONS[0][a:b] for a, b in offsets[0][1:-1]]
    assert words == CAPTIONS[0].split()


def run_objective(model, batch, seed=0):
    torch.manual_seed(seed)
    return PretrainingObjective()(model, batch)


def test_objective_adds_the_grounding_term(tiny_model, make_batch, monkeypatch):
    model = tiny_model
    assert model.config.itm_grounding_weight == 1.0
    assert PretrainingObjective().uses_grounding(model)
    seen = {}
    real = objective_mod.grounding_loss

    def spy(attention, targets):
        seen["attention"], seen["targets"] = attention.detach(), targets
        return real(attention, targets)

    monkeypatch.setattr(objective_mod, "grounding_loss", spy)
    graphs = make_batch(GRAPH_SIZES)
    batch = PretrainBatch(graphs, CAPTIONS, [CAPTIONS[1], None, None, CAPTIONS[0]], GROUNDINGS)
    out = run_objective(model, batch)
    g = out["itm_grounding"]
    assert g.requires_grad and torch.isfinite(g) and g.item() > 0
    acc = out["diag/grounding_accuracy"]
    assert not acc.requires_grad and 0.0 <= acc.item() <= 1.0

    # targets: the tokens of each phrase (MiniLM: one token per word here) → its nodes
    t = seen["targets"]
    entries = list(zip(t.rows.tolist(), t.tokens.tolist(), t.nodes.tolist(), strict=True))
    assert entries == [
        (0, 2, 1),  # red
        (0, 3, 1),  # circle
        (0, 7, 2),  # blue
        (0, 7, 3),
        (0, 8, 2),  # square
        (0, 8, 3),
        (2, 2, 1),  # small
        (2, 3, 1),  # green
        (2, 4, 1),  # triangle
        (2, 7, 2),  # grass
    ]
    assert t.num_groups == 8
    # the positives' first-block attention: B×L×N over each graph's real nodes; rows sum to 1
    # less the mass on the attention sink's null node (when the head has one)
    a = seen["attention"]
    text = model.encode_text([*CAPTIONS, CAPTIONS[1], CAPTIONS[0]])
    assert a.shape == (4, text.token_embeds.shape[1], max(GRAPH_SIZES))
    for i, n in enumerate(GRAPH_SIZES):
        rows = a[i, text.attention_mask[i]]
        total = rows.sum(-1)
        if model.config.itm_attention_sink:
            assert bool((total > 0).all()) and bool((total < 1).all())
        else:
            torch.testing.assert_close(total, torch.ones(rows.shape[0]))
        assert rows[:, n:].abs().sum().item() == 0.0
    # the loss is the grounding loss of that attention
    expected, expected_acc = real(a, t)
    torch.testing.assert_close(g.detach(), expected)
    torch.testing.assert_close(acc, expected_acc)


def test_total_includes_the_weighted_grounding_term(tiny_model, make_batch):
    model = tiny_model
    batch = PretrainBatch(
        make_batch(GRAPH_SIZES), CAPTIONS, [CAPTIONS[1], None, None, None], GROUNDINGS
    )
    w_itm = model.config.itm_weight
    totals = {}
    for gamma in (0.0, 2.5):
        model.config.itm_grounding_weight = gamma
        out = run_objective(model, batch)
        totals[gamma] = out
    assert "itm_grounding" not in totals[0.0]
    assert "diag/grounding_accuracy" not in totals[0.0]
    # with the grounded relation term (default), its referent gate's loss is weighted alike
    assert "itm_referent" not in totals[0.0]
    g = totals[2.5]["itm_grounding"] + totals[2.5]["itm_referent"]
    torch.testing.assert_close(totals[2.5]["itm"], totals[0.0]["itm"])
    torch.testing.assert_close(totals[2.5]["loss"] - totals[0.0]["loss"], w_itm * 2.5 * g)
    assert (w_itm * 2.5 * g).item() > 1e-3


def test_grounding_gradient_reaches_the_itm_cross_attention(tiny_model, make_batch):
    model = tiny_model
    batch = PretrainBatch(make_batch(GRAPH_SIZES), CAPTIONS, [None] * 4, GROUNDINGS)
    out = run_objective(model, batch)
    params = {
        "cross": model.itm_head.layers[0].attn.in_proj_weight,
        "position": model.itm_head.token_position.weight,
    }
    grads = torch.autograd.grad(
        out["itm_grounding"], list(params.values()), allow_unused=True, retain_graph=True
    )
    for name, grad in zip(params, grads, strict=True):
        assert grad is not None and grad.abs().sum().item() > 0, name
    # the total's gradient differs from the ITM-only gradient by the grounding term
    full = torch.autograd.grad(out["loss"], params["cross"], retain_graph=True)[0]
    model.config.itm_grounding_weight = 0.0
    base = run_objective(model, batch)
    without = torch.autograd.grad(base["loss"], params["cross"])[0]
    assert not torch.allclose(full, without)


def test_no_groundings_no_grounding_term(tiny_model, make_batch, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("token offsets computed without groundings")

    monkeypatch.setattr(tiny_model.text_encoder, "token_offsets", boom)
    batch = PretrainBatch(make_batch(GRAPH_SIZES), CAPTIONS, [])
    out = run_objective(tiny_model, batch)
    assert "itm_grounding" not in out and "diag/grounding_accuracy" not in out
    assert torch.isfinite(out["loss"]) and "itm" in out


def test_groundings_that_name_no_token_give_no_term(tiny_model, make_batch):
    batch = PretrainBatch(make_batch(GRAPH_SIZES), CAPTIONS, [], [(), None, (), ()])
    out = run_objective(tiny_model, batch)
    assert "itm_grounding" not in out and torch.isfinite(out["loss"])


def test_uses_grounding(tiny_overrides):
    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_grounding_weight=0.0)
    assert not PretrainingObjective().uses_grounding(model)
    model.config.itm_grounding_weight = 0.5
    assert PretrainingObjective().uses_grounding(model)
    assert not PretrainingObjective({"itm": 0.0}).uses_grounding(model)


def test_batch_checks_the_number_of_groundings(make_batch):
    with pytest.raises(ValueError, match="3 groundings for 4 graphs"):
        PretrainBatch(make_batch(GRAPH_SIZES), CAPTIONS, [], [(), (), ()])
    batch = PretrainBatch(make_batch(GRAPH_SIZES), CAPTIONS, [], GROUNDINGS)
    assert batch.to("cpu").groundings is GROUNDINGS
