"""Masked relation prediction: masking, the head's classifier, the objective term, scoring."""

from __future__ import annotations

import pytest
import torch

from neurogshn.data.vocabulary import RELATIONS
from neurogshn.losses.itm import ITMHead
from neurogshn.losses.relation import (
    mask_relation,
    mask_relations,
    masked_relation_logits,
    relation_targets,
)


def test_mask_relation_first_phrase_longest_match_and_case():
    assert mask_relation("the red circle is left of the cube.", RELATIONS, "[MASK]") == (
        "the red circle is [MASK] the cube.",
        0,
    )
    # first occurrence only; "Below" matched case-insensitively and mapped to its index
    text = "Below the cross there is a square, and the circle is above the cross."
    assert mask_relation(text, RELATIONS, "<m>") == (
        "<m> the cross there is a square, and the circle is above the cross.",
        3,
    )
    # "left" alone is not "left of"; words that merely contain a phrase do not match
    assert mask_relation("the left square", RELATIONS, "[MASK]") is None
    assert mask_relation("aboveground circle", RELATIONS, "[MASK]") is None
    assert mask_relation("right  of", RELATIONS, "[M]") == ("[M]", 1)  # any whitespace
    assert mask_relation("left of", (), "[M]") is None


def test_relation_targets_rows_texts_classes():
    rows, texts, classes = relation_targets(
        ["a circle above a square", "there is grass", "a cross right of a square"],
        RELATIONS,
        "[MASK]",
    )
    assert rows == [0, 2] and classes == [2, 1]
    assert texts == ["a circle [MASK] a square", "a cross [MASK] a square"]


TWO = "the red circle is left of the cube, and the cube is above the cone."


def test_mask_relations_one_copy_per_phrase_in_order():
    assert mask_relations(TWO, RELATIONS, "[M]") == [
        ("the red circle is [M] the cube, and the cube is above the cone.", 0),
        ("the red circle is left of the cube, and the cube is [M] the cone.", 2),
    ]
    assert mask_relations("there is grass", RELATIONS, "[M]") == []
    assert mask_relations(TWO, (), "[M]") == []
    # mask_relation is the first of them
    assert mask_relation(TWO, RELATIONS, "[M]") == mask_relations(TWO, RELATIONS, "[M]")[0]


def test_relation_targets_all_mentions_repeat_rows():
    captions = ["there is grass", TWO, "a cross right of a square"]
    first = relation_targets(captions, RELATIONS, "[M]")
    assert first == relation_targets(captions, RELATIONS, "[M]", "first")
    assert first[0] == [1, 2] and first[2] == [0, 1]
    rows, texts, classes = relation_targets(captions, RELATIONS, "[M]", "all")
    assert rows == [1, 1, 2] and classes == [0, 2, 1]
    assert texts[1] == "the red circle is left of the cube, and the cube is [M] the cone."
    with pytest.raises(ValueError, match="mentions"):
        relation_targets(captions, RELATIONS, "[M]", "second")


def test_relation_scores_sum_every_mention_with_all(tiny_model, make_batch):
    """With itm_relation_mentions="all" a two-relation caption's relation term is the sum of
    the log-probabilities of both stated relations, each predicted with its own phrase
    masked; a one-relation caption scores as with "first"."""
    from neurogshn.model import GSHN

    one = "a cross right of a square"
    texts = [TWO, one]
    tiny_model.eval()
    graphs = make_batch(sizes=(4, 3))
    with torch.no_grad():
        image = tiny_model.encode_image(graphs)
        first = tiny_model.relation_scores(image, texts)
        nodes, mask = image.dense_nodes()
        pos = image.dense_nodes(image.node_pos)[0]
        rows, logits, rel, prior = masked_relation_logits(
            tiny_model, texts, nodes, mask, pos, "all"
        )[:4]
        stated = logits.log_softmax(-1).gather(1, rel[:, None]).squeeze(1)
        all_model = GSHN(tiny_model.config.replace(itm_relation_mentions="all"))
        all_model.load_state_dict(tiny_model.state_dict())
        all_model.eval()
        summed = all_model.relation_scores(all_model.encode_image(graphs), texts)
    assert rows.tolist() == [0, 0, 1] and prior is None  # no text prior unless asked for
    torch.testing.assert_close(first, torch.stack([stated[0], stated[2]]))
    torch.testing.assert_close(summed, torch.stack([stated[0] + stated[1], stated[2]]))
    assert float(summed[0]) < float(first[0])  # a second log-probability (< 0) was added


def test_objective_trains_every_mention_with_all(tiny_model, make_batch, captions):
    from neurogshn.losses.objective import masked_relation_loss

    texts = [TWO, *captions[:3]]
    image = tiny_model.encode_image(make_batch())
    nodes, mask = image.dense_nodes()
    pos = image.dense_nodes(image.node_pos)[0]
    first = masked_relation_logits(tiny_model, texts, nodes, mask, pos, "first")
    every = masked_relation_logits(tiny_model, texts, nodes, mask, pos, "all")
    assert first is not None and every is not None
    assert every[0].tolist() == [0, 0, 1, 2, 3] and first[0].tolist() == [0, 1, 2, 3]
    tiny_model.config = tiny_model.config.replace(itm_relation_mentions="all")
    loss = masked_relation_loss(tiny_model, texts, nodes, mask, image)
    assert loss is not None and torch.isfinite(loss.loss) and loss.prior_loss is None


def test_relation_logits_read_the_mask_position_and_learn_geometry():
    """A 2-token caption '<obj> <mask>' where the mask's class is whether node 1 is left of
    node 2: learnable only through node positions, read at the mask index."""
    torch.manual_seed(0)
    head = ITMHead(
        16,
        heads=2,
        layers=2,
        dropout=0.0,
        node_position=True,
        self_attention=True,
        token_position=True,
        relation_classes=2,
    )
    with pytest.raises(ValueError, match="relation classifier"):
        ITMHead(16, relation_classes=0).relation_logits(
            torch.zeros(1, 2, 16),
            torch.ones(1, 2),
            torch.zeros(1, 2, 16),
            torch.ones(1, 2),
            None,
            torch.tensor([1]),
        )
    opt = torch.optim.Adam(head.parameters(), 3e-3)
    obj, msk = torch.randn(16), torch.randn(16)

    def batch(n: int):
        pos = torch.rand(n, 2, 2)
        label = (pos[:, 0, 0] < pos[:, 1, 0]).long()
        tokens = torch.stack([obj, msk]).expand(n, 2, 16)
        nodes = torch.stack([obj, -obj]).expand(n, 2, 16)
        ones = torch.ones(n, 2, dtype=torch.bool)
        return tokens, ones, nodes, ones, pos, torch.ones(n, dtype=torch.long), label

    for _ in range(300):
        *inputs, label = batch(64)
        loss = torch.nn.functional.cross_entropy(head.relation_logits(*inputs), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    *inputs, label = batch(256)
    with torch.no_grad():
        acc = (head.relation_logits(*inputs).argmax(-1) == label).float().mean()
    assert float(acc) > 0.9


def test_objective_adds_relation_term_and_old_checkpoints_have_none(
    tiny_model, make_batch, captions, tmp_path
):
    import json

    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    out = PretrainingObjective()(tiny_model, PretrainBatch(make_batch(), captions, []))
    stating = sum(mask_relation(c, RELATIONS, "[MASK]") is not None for c in captions)
    assert stating > 0 and torch.isfinite(out["itm_relation"]) and out["itm_relation"] > 0
    assert 0.0 <= float(out["diag/relation_accuracy"]) <= 1.0
    out["loss"].backward()
    assert tiny_model.itm_head.relation_head.weight.grad.abs().sum() > 0
    # a checkpoint written before the relation classifier existed loads without one
    legacy = GSHN.from_config_name(
        "gshn-tiny", **{**tiny_model.config.to_dict(), "itm_relation_weight": 0.0}
    )
    legacy.save_pretrained(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["itm_relation_weight"], cfg["itm_relation_vocab"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    loaded = GSHN.from_pretrained(tmp_path / "old", device="cpu")
    assert loaded.itm_head.relation_head is None and loaded.config.itm_relation_weight == 0
