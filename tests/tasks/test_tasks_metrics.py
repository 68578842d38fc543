"""Metric code against hand-computed cases (tests/tasks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurogshn.tasks.metrics import (
    format_metrics_table,
    hard_negative_metrics,
    nlvr2_accuracy,
    pairwise_accuracy,
    retrieval_metrics,
    retrieval_ranks,
    ve_accuracy,
    vqa_accuracy,
)

OWNER_3x5 = [0] * 5 + [1] * 5 + [2] * 5


def _hand_matrix() -> torch.Tensor:
    """3 images × 15 captions (5 per image); ranks worked out by hand in the test below."""
    s = torch.zeros(3, 15)
    # image 0: its first caption clearly best -> i2t rank 0
    s[0, 0:5] = torch.tensor([0.9, 0.1, 0.1, 0.1, 0.1])
    # image 1: own captions 0.2, image-0 captions 0.5 (5 of them ahead) -> rank 5
    s[1, 0:5] = 0.5
    s[1, 5:10] = 0.2
    # image 2: own 0.3, image-0 captions tie at 0.3 (ties count against) + one 0.31 -> rank 6
    s[2, 0:5] = 0.3
    s[2, 5] = 0.31
    s[2, 10:15] = 0.3
    return s


def test_ranks_hand_computed():
    i2t, t2i = retrieval_ranks(_hand_matrix(), OWNER_3x5)
    assert i2t.tolist() == [0, 5, 6]
    # col 0: 0.9 vs 0.5, 0.3 -> 0; cols 1-4: 0.1 vs 0.5, 0.3 -> 2; col 5: 0.2 vs 0.31 -> 1
    assert t2i.tolist() == [0, 2, 2, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_recall_hand_computed():
    m = retrieval_metrics(_hand_matrix(), OWNER_3x5)
    assert m["i2t_R@1"] == pytest.approx(1 / 3)
    assert m["i2t_R@5"] == pytest.approx(1 / 3)  # rank 5 is the 6th place: not in the top 5
    assert m["i2t_R@10"] == pytest.approx(1.0)
    assert m["t2i_R@1"] == pytest.approx(10 / 15)
    assert m["t2i_R@5"] == pytest.approx(1.0)
    assert m["t2i_R@10"] == pytest.approx(1.0)
    assert m["rsum"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1 + 10 / 15 + 1 + 1))
    assert m["i2t_MedR"] == 6
    assert m["t2i_MedR"] == 1
    assert m["num_images"] == 3 and m["num_captions"] == 15


def test_any_caption_counts_for_i2t():
    # image 0's 5th caption is the only one on top: still a hit at R@1
    s = torch.zeros(2, 10)
    s[0, 4] = 1.0
    s[0, 5:10] = 0.5
    s[1, 5:10] = 0.9
    m = retrieval_metrics(s, [0] * 5 + [1] * 5)
    assert m["i2t_R@1"] == 1.0


def test_constant_scores_are_not_rewarded():
    # 20 images × 100 captions, all scores equal: pessimistic ties -> every true item last.
    owner = np.repeat(np.arange(20), 5)
    i2t, t2i = retrieval_ranks(np.ones((20, 100)), owner)
    assert (i2t == 95).all() and (t2i == 19).all()
    m = retrieval_metrics(np.ones((20, 100)), owner)
    for d in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert m[f"{d}_R@{k}"] == 0.0
    assert m["rsum"] == 0.0


def test_perfect_and_inverted():
    owner = np.repeat(np.arange(4), 5)
    perfect = (owner[None, :] == np.arange(4)[:, None]).astype(float)
    m = retrieval_metrics(perfect, owner)
    assert m["rsum"] == pytest.approx(600.0)
    m = retrieval_metrics(-perfect, owner)  # every true pair scored lowest
    assert m["i2t_R@1"] == 0.0 and m["t2i_R@1"] == 0.0
    assert m["t2i_R@5"] == 1.0  # only 4 images: rank 3 < 5


def test_matches_sort_reference_and_chunking():
    gen = torch.Generator().manual_seed(0)
    n_img, per = 13, 5
    owner = torch.arange(n_img).repeat_interleave(per)
    sim = torch.randn(n_img, n_img * per, generator=gen)
    i2t, t2i = retrieval_ranks(sim, owner, chunk_size=3)
    for i in range(n_img):
        order = torch.argsort(sim[i], descending=True)
        pos = [int(torch.nonzero(owner[order] == i)[0])]
        assert int(i2t[i]) == pos[0]
    for c in range(n_img * per):
        order = torch.argsort(sim[:, c], descending=True)
        assert int(t2i[c]) == int(torch.nonzero(order == owner[c])[0])
    a, b = retrieval_ranks(sim, owner, chunk_size=1024)
    assert torch.equal(a, i2t) and torch.equal(b, t2i)


def test_retrieval_input_errors():
    with pytest.raises(ValueError, match="captions"):
        retrieval_ranks(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="without any caption"):
        retrieval_ranks(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(np.array([[np.nan, 0.0]]), [0, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        retrieval_ranks(np.zeros((1, 2)), [0, 1])


def test_pairwise_and_hard_negatives():
    assert pairwise_accuracy([1.0, 0.5], [0.0, 0.5]) == 0.5  # the tie counts as wrong
    assert math.isnan(pairwise_accuracy([], []))
    m = hard_negative_metrics(
        [0.5, 0.5, 0.2, 0.7, 0.9, 0.1, 0.6, 0.3, 0.2, 0.9, 0.4, 0.8, 0.1],
        [0.4, 0.5, 0.3, 0.1, 0.8, 0.2, 0.6, 0.0, 0.3, 0.1, 0.5, 0.7, 0.2],
        ["relation_swap", "relation_swap", "attribute_swap", "object_replace", "attribute_swap"]
        + ["size_flip"] * 3
        + ["count_flip"] * 2
        + ["stuff_replace"]
        + ["unrelated_pair"] * 2,
    )
    assert m["relation_swap_acc"] == 0.5 and m["relation_swap_n"] == 2
    assert m["attribute_swap_acc"] == 0.5 and m["attribute_swap_n"] == 2
    assert m["object_replace_acc"] == 1.0 and m["object_replace_n"] == 1
    assert m["size_flip_acc"] == pytest.approx(1 / 3) and m["size_flip_n"] == 3
    assert m["count_flip_acc"] == 0.5 and m["count_flip_n"] == 2
    assert m["stuff_replace_acc"] == 0.0 and m["stuff_replace_n"] == 1
    assert m["unrelated_pair_acc"] == 0.5 and m["unrelated_pair_n"] == 2
    assert m["hard_negative_acc"] == pytest.approx(6 / 13)
    with pytest.raises(ValueError):
        hard_negative_metrics([1.0], [0.0, 1.0], ["relation_swap"])


def test_vqa_ve_nlvr2():
    m = vqa_accuracy(
        ["red", "2", "yes", "left", "circle", "no"],
        ["red", "3", "yes", "right", "circle", "no"],
        ["color", "count", "existence", "relation", "shape", "existence"],
    )
    assert m["vqa_acc"] == pytest.approx(4 / 6)
    assert m["vqa_acc_color"] == 1.0 and m["vqa_acc_count"] == 0.0
    assert m["vqa_acc_existence"] == 1.0 and m["vqa_n_existence"] == 2
    assert m["vqa_acc_relation"] == 0.0 and m["vqa_acc_shape"] == 1.0
    # indices work as well as strings; tensors too
    m = vqa_accuracy(torch.tensor([1, 2, 3]), np.array([1, 2, 0]))
    assert m["vqa_acc"] == pytest.approx(2 / 3) and "vqa_acc_color" not in m

    m = ve_accuracy(
        ["entailment", "contradiction", "neutral", "entailment"],
        ["entailment", "entailment", "neutral", "contradiction"],
    )
    assert m["ve_acc"] == 0.5
    assert m["ve_acc_entailment"] == 0.5 and m["ve_acc_neutral"] == 1.0
    assert m["ve_acc_contradiction"] == 0.0

    m = nlvr2_accuracy([True, False, True, True], [True, True, False, True])
    assert m["nlvr2_acc"] == 0.5
    assert m["nlvr2_acc_True"] == pytest.approx(2 / 3) and m["nlvr2_acc_False"] == 0.0
    # per statement form; a statement outside the grammar (None) counts only overall
    m = nlvr2_accuracy(
        [True, False, True, True, False],
        [True, True, False, True, False],
        ["both", "both", "compare", None, "compare"],
    )
    assert m["nlvr2_acc"] == pytest.approx(3 / 5) and m["nlvr2_n"] == 5
    assert m["nlvr2_acc_both"] == 0.5 and m["nlvr2_n_both"] == 2
    assert m["nlvr2_acc_compare"] == 0.5 and m["nlvr2_n_compare"] == 2
    assert m["nlvr2_acc_True"] == pytest.approx(2 / 3) and m["nlvr2_n_True"] == 3
    assert "nlvr2_acc_None" not in m
    # majority label per form on the 4 kinded examples: both (True, True), compare (False,
    # False): answering by form alone gets all four
    assert m["nlvr2_form_prior_acc"] == 1.0
    m = nlvr2_accuracy([True] * 4, [True, True, False, False], ["left", "left", "left", "both"])
    assert m["nlvr2_form_prior_acc"] == 0.75 and m["nlvr2_acc_left"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="statement kinds"):
        nlvr2_accuracy([True], [True], ["both", "left"])
    with pytest.raises(ValueError):
        vqa_accuracy([1, 2], [1])


def test_format_table():
    text = format_metrics_table({"i2t_R@1": 0.5, "rsum": 300.0, "vqa_n": 4.0}, title="x")
    assert "50.00 %" in text and "300.00" in text and "vqa_n" in text and text.startswith("x")


def test_recall_given_truth_drops_false_pairs():
    """Two images, three captions (0, 1 of image 0; 2 of image 1). Caption 0 is also true of
    image 1, caption 1 is false of it. t2i: caption 0 ranks image 1 first (a tie the caption
    allows, still a miss), caption 1 ranks image 1 first but that pair is false (dropped:
    a hit), caption 2 is right. i2t: image 1 ranks caption 1 (false) above its own."""
    from neurogshn.tasks.metrics import recall_given_truth

    sim = torch.tensor([[0.2, 0.1, 0.0], [0.9, 0.8, 0.5]])
    truth = torch.tensor([[True, True, False], [True, False, True]])
    owner = [0, 0, 1]
    assert retrieval_metrics(sim, owner)["t2i_R@1"] == pytest.approx(1 / 3)
    got = recall_given_truth(sim, truth, owner)
    assert got["t2i_R@1_given_truth"] == pytest.approx(2 / 3)
    # image 1: caption 0 (true of it, not its own) still beats caption 2
    assert got["i2t_R@1_given_truth"] == pytest.approx(1 / 2)
    truth[1, 0] = False
    assert recall_given_truth(sim, truth, owner) == {
        "i2t_R@1_given_truth": 1.0,
        "t2i_R@1_given_truth": 1.0,
    }
    assert recall_given_truth(sim, truth, owner, "t2i") == {"t2i_R@1_given_truth": 1.0}
    # a caption false of its own image keeps its own pair: nothing true to rank, every hit
    nothing = recall_given_truth(sim, torch.zeros(2, 3, dtype=torch.bool), owner)
    assert nothing == {"i2t_R@1_given_truth": 1.0, "t2i_R@1_given_truth": 1.0}
    with pytest.raises(ValueError, match="direction"):
        recall_given_truth(sim, truth, owner, "up")
