"""The grounded relation term of the ITM match score: the displacement between the referents
named before and after each word, read against the word's frozen state; its numbers, its zero
start, its referent gate and what it needs, and the relation-swap match it makes learnable."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.losses.grounding import GroundingTargets, referent_loss
from neurogshn.model.config import LEGACY_ITM_FIELDS, GSHNConfig
from neurogshn.model.grounded_relation import GroundedRelationScore
from neurogshn.model.itm import ITMHead

H = 8

_PROBE = Path(__file__).resolve().parents[2] / "benchmarks" / "relation_probe.py"
_spec = importlib.util.spec_from_file_location("neurogshn_bench_relation_probe_r", _PROBE)
relation_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(relation_probe)


def open_gate(score: GroundedRelationScore) -> None:
    """Every token counts as a referent (gate ≈ 1)."""
    with torch.no_grad():
        score.referent.weight.zero_()
        score.referent.bias.fill_(30.0)


def two_referents(a: int = 1, b: int = 4, length: int = 6):
    """One caption of ``length`` tokens; token ``a`` attends node 0 at (0.2, 0.5), token
    ``b`` node 1 at (0.9, 0.3), the others attend nothing."""
    attention = torch.zeros(1, length, 2)
    attention[0, a, 0] = 1.0
    attention[0, b, 1] = 1.0
    pos = torch.tensor([[[0.2, 0.5], [0.9, 0.3]]])
    return attention, pos


@torch.no_grad()
def test_displacement_between_the_referents_before_and_after_each_word():
    score = GroundedRelationScore(H, window=2.0)
    open_gate(score)
    attention, pos = two_referents()
    words = torch.randn(1, 6, H)
    mask = torch.ones(1, 6, dtype=torch.bool)
    delta, confidence = score.displacements(words, mask, attention, pos)
    # tokens 2 and 3 lie between the referents: B - A
    for t in (2, 3):
        torch.testing.assert_close(delta[0, t], torch.tensor([0.7, -0.2]))
    # confidence: the smaller side's decayed mass, e^{-(|t-s|-1)/τ}
    torch.testing.assert_close(confidence[0, 2], torch.tensor(math.exp(-1 / 2)))
    torch.testing.assert_close(confidence[0, 3], torch.tensor(math.exp(-1 / 2)))
    # no referent before token 0 or after token 5: nothing to compare
    assert confidence[0, 0] == 0 and confidence[0, 5] == 0
    # the score is Σ_t c_t (U x_t)·Δ_t
    score.direction.weight.normal_()
    expected = sum(
        confidence[0, t] * (score.direction(words[0, t]) * delta[0, t]).sum() for t in range(6)
    )
    torch.testing.assert_close(score(words, mask, attention, pos)[0], expected)


@torch.no_grad()
def test_swapping_the_referents_flips_the_sign_and_the_nearest_referent_dominates():
    score = GroundedRelationScore(H, window=1.0)
    open_gate(score)
    score.direction.weight.normal_()
    words = torch.randn(1, 6, H)
    mask = torch.ones(1, 6, dtype=torch.bool)
    attention, pos = two_referents(1, 4)
    swapped, _ = two_referents(4, 1)
    s, s_swapped = score(words, mask, attention, pos), score(words, mask, swapped, pos)
    torch.testing.assert_close(s_swapped, -s)
    # a third referent far before the word: the near one dominates the "before" side
    far = torch.zeros(1, 9, 3)
    far[0, 0, 2] = 1.0  # far referent at (0.5, 0.9)
    far[0, 4, 0] = 1.0
    far[0, 7, 1] = 1.0
    pos3 = torch.cat([pos, torch.tensor([[[0.5, 0.9]]])], dim=1)
    delta, _ = score.displacements(
        torch.randn(1, 9, H), torch.ones(1, 9, dtype=torch.bool), far, pos3
    )
    before = (0.2 + 0.5 * math.exp(-4)) / (1 + math.exp(-4))  # distances 1 and 5
    assert abs(delta[0, 5, 0].item() - (0.9 - before)) < 1e-5


@torch.no_grad()
def test_the_gate_and_the_mask_decide_what_counts():
    score = GroundedRelationScore(H, window=2.0)
    score.direction.weight.normal_()
    attention, pos = two_referents()
    words = torch.randn(1, 6, H)
    mask = torch.ones(1, 6, dtype=torch.bool)
    # a closed gate: no referent anywhere, no score
    with torch.no_grad():
        score.referent.weight.zero_()
        score.referent.bias.fill_(-30.0)
    assert score(words, mask, attention, pos).abs().item() < 1e-9
    # padding: a referent in the padding is no referent, and a padded word scores nothing
    open_gate(score)
    padded = mask.clone()
    padded[0, 4:] = False
    assert score(words, padded, attention, pos).abs().item() < 1e-9
    with pytest.raises(ValueError, match="window"):
        GroundedRelationScore(H, window=0.0)


@torch.no_grad()
def test_zero_start_is_the_plain_head_and_the_head_needs_word_states():
    gen = torch.Generator().manual_seed(0)
    tokens, words = torch.randn(2, 6, 16, generator=gen), torch.randn(2, 6, H, generator=gen)
    tmask = torch.ones(2, 6, dtype=torch.bool)
    tmask[1, 4:] = False
    nodes, nmask = torch.randn(2, 3, 16, generator=gen), torch.ones(2, 3, dtype=torch.bool)
    pos = torch.rand(2, 3, 2, generator=gen)
    kwargs = dict(node_position=True, self_attention=True, attention_sink=True)
    torch.manual_seed(0)
    plain = ITMHead(16, 2, 2, 0.0, **kwargs).eval()
    rel = ITMHead(16, 2, 2, 0.0, word_dim=H, grounded_relation=2.0, **kwargs).eval()
    rel.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(
        rel(tokens, tmask, nodes, nmask, pos, False, words), plain(tokens, tmask, nodes, nmask, pos)
    )
    # the term enters the match logit only: the score moves by exactly the term
    rel.relation.direction.weight.normal_()
    _, attention = rel(tokens, tmask, nodes, nmask, pos, True, words)
    term = rel.relation(words, tmask, attention, pos)
    assert term.abs().min() > 0
    torch.testing.assert_close(
        rel.score(tokens, tmask, nodes, nmask, pos, words),
        plain.score(tokens, tmask, nodes, nmask, pos) + term,
    )
    with pytest.raises(ValueError, match="word_states"):
        rel(tokens, tmask, nodes, nmask, pos)
    with pytest.raises(ValueError, match="word_dim"):
        ITMHead(16, grounded_relation=2.0)


def test_referent_loss_labels_phrase_tokens_in_grounded_captions_only():
    logits = torch.tensor([[0.0, 2.0, -1.0, 0.5], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    # caption 0: token 1 is in a grounded phrase (two nodes, one group); caption 1 ungrounded
    targets = GroundingTargets(
        torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([0, 1]), torch.tensor([0, 0]), 1
    )
    loss, accuracy = referent_loss(logits, targets, mask)
    scored = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([0.0, 1.0, 0.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(scored, labels)
    torch.testing.assert_close(loss, expected)
    # 0.0 → "not a referent" (right), 2.0 → referent (right), -1.0 → not (right)
    assert accuracy.item() == 1.0
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 3] == 0


def test_config_field_and_old_checkpoints():
    assert LEGACY_ITM_FIELDS["itm_grounded_relation"] == 0.0
    with pytest.raises(ConfigError, match="itm_grounded_relation"):
        GSHNConfig(itm_grounded_relation=-1.0)
    with pytest.raises(ConfigError, match="itm_node_position"):
        GSHNConfig(itm_grounded_relation=2.0, itm_node_position=False)


def test_a_model_built_with_it_trains_and_reloads(tmp_path, tiny_overrides, make_batch):
    from gshn_fixtures import one_step_and_reload

    overrides = {**tiny_overrides, "itm_grounded_relation": 2.0}
    model, again = one_step_and_reload(overrides, make_batch, tmp_path / "m")
    grad = model.itm_head.relation.direction.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert again.config.itm_grounded_relation == 2.0
    for name in ("direction", "referent"):
        torch.testing.assert_close(
            getattr(again.itm_head.relation, name).weight,
            getattr(model.itm_head.relation, name).weight,
        )


def test_objective_trains_the_referent_gate_from_groundings(tiny_overrides, make_batch):
    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_grounded_relation=2.0)
    captions = ["a red circle left of a blue square", "a blue square left of a red circle"]
    groundings = [((2, 12, (1,)), (23, 34, (2,))), ((2, 13, (1,)), (24, 34, (2,)))]
    batch = PretrainBatch(make_batch((3, 3)), captions, [captions[1], None], groundings)
    out = PretrainingObjective()(model, batch)
    assert out["itm_referent"].item() > 0
    assert 0.0 <= out["diag/referent_accuracy"].item() <= 1.0
    grad = torch.autograd.grad(out["loss"], model.itm_head.relation.referent.weight)[0]
    assert grad.abs().sum() > 0


def test_the_relation_swap_match_is_learnt_with_it_and_not_without():
    # benchmarks/relation_probe.py at a small size: "A <left of|right of> B" against the scene
    kwargs = dict(steps=150, dim=64, heads=4, eval_size=1000)
    torch.set_num_threads(1)
    without = relation_probe.train_probe("match", relation=0.0, **kwargs)
    with_term = relation_probe.train_probe("match", relation=2.0, **kwargs)
    assert without["accuracy"] < 0.6
    assert with_term["accuracy"] > 0.9
