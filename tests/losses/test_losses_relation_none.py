"""The "no relation" class of masked relation prediction (``itm_relation_none``)."""

from __future__ import annotations

import json

import pytest
import torch

from neurogshn.data.vocabulary import RELATIONS
from neurogshn.errors import ConfigError
from neurogshn.losses.objective import (
    PretrainBatch,
    PretrainingObjective,
    masked_relation_loss,
)
from neurogshn.losses.relation import masked_relation_logits, unrelated_pair_logits

R = len(RELATIONS)
CAPTIONS = [
    "a red circle left of a blue square",
    "the green cross is above the red circle, and the blue square is below the cross",
    "a small green triangle above the grass",
    "there is grass in the background",
]
NEGATIVES = [
    "a red circle above a green cross",  # unrelated pair
    "the blue square is above the red circle, and the blue square is below the cross",
    None,
    "there is sand in the background",
]
KINDS = ["unrelated_pair", "unrelated_pair", None, "stuff_replace"]


@pytest.fixture
def none_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name(
        "gshn-tiny", itm_relation_none=True, itm_text_prior=True, **tiny_overrides
    )


def test_widths_and_validation(none_model, tiny_overrides, make_batch):
    from neurogshn.model import GSHN

    assert none_model.itm_head.relation_head.out_features == R + 1
    assert none_model.text_prior.relation.out_features == R  # what captions state
    assert none_model.evidence_size == 3 + R + (R + 1)
    none_model.eval()
    with torch.no_grad():
        graphs = make_batch()
        image = none_model.encode_image(graphs)
        text = none_model.encode_text(CAPTIONS)
        evidence = none_model.match_evidence(image, text, CAPTIONS)
    assert evidence.shape == (4, none_model.evidence_size)
    assert (evidence[:3, 1] == 1).all() and (evidence[3][1:] == 0).all()
    # log p over R + 1 classes, the one-hot of the stated relation over R
    assert torch.allclose(evidence[:3, 3 : 3 + R + 1].exp().sum(-1), torch.ones(3), atol=1e-5)
    assert evidence[0, 3 + R + 1 :].tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="itm_relation_none"):
        GSHN.from_config_name(
            "gshn-tiny", itm_relation_none=True, itm_relation_weight=0.0, **tiny_overrides
        )


def test_unrelated_pairs_are_trained_towards_no_relation(none_model, make_batch):
    """The relation loss is one cross-entropy over the captions' stated relations and the
    unrelated pairs' first relation, whose target is the last class; its gradient reaches
    that class. The kinds come from the batch; a model without the class ignores them."""
    image = none_model.encode_image(make_batch())
    nodes, mask = image.dense_nodes()
    pos = image.dense_nodes(image.node_pos)[0]
    none_model.eval()  # no dropout: the pieces below are recomputed exactly
    unrelated = [(0, NEGATIVES[0]), (1, NEGATIVES[1])]
    loss = masked_relation_loss(none_model, CAPTIONS, nodes, mask, image, unrelated)
    found = masked_relation_logits(none_model, CAPTIONS, nodes, mask, pos)
    rows = torch.tensor([0, 1])
    none = unrelated_pair_logits(none_model, NEGATIVES[:2], nodes[rows], mask[rows], pos[rows])
    assert none.targets.tolist() == [R, R] and none.prior_logits is None
    # the second negative's second relation is true: only its first one is a target
    assert none.rows.tolist() == [0, 1]
    expected = torch.nn.functional.cross_entropy(
        torch.cat([found.logits, none.logits]), torch.cat([found.targets, none.targets])
    )
    torch.testing.assert_close(loss.loss, expected)
    assert loss.none_accuracy is not None and loss.prior_loss is not None
    torch.testing.assert_close(
        loss.prior_loss, torch.nn.functional.cross_entropy(found.prior_logits, found.targets)
    )

    batch = PretrainBatch(make_batch(), CAPTIONS, NEGATIVES, hard_negative_kinds=KINDS)
    out = PretrainingObjective()(none_model, batch)
    assert "diag/relation_none_accuracy" in out
    out["loss"].backward()
    assert none_model.itm_head.relation_head.weight.grad[R].abs().sum() > 0
    # without kinds (or without the class) nothing is trained towards it
    none_model.zero_grad()
    out = PretrainingObjective()(none_model, PretrainBatch(make_batch(), CAPTIONS, NEGATIVES))
    assert "diag/relation_none_accuracy" not in out
    with pytest.raises(ValueError, match="kinds"):
        PretrainBatch(make_batch(), CAPTIONS, NEGATIVES, hard_negative_kinds=KINDS[:2])


def test_no_relation_lowers_the_stated_relations_score(none_model, make_batch):
    """The relation term is log p(stated) over R + 1 classes: the more probable "no
    relation", the lower every stated relation scores."""
    none_model.eval()
    texts = CAPTIONS[:2]
    with torch.no_grad():
        image = none_model.encode_image(make_batch(sizes=(4, 3)))
        before = none_model.relation_scores(image, texts)
        none_model.itm_head.relation_head.bias[R] += 5.0
        after = none_model.relation_scores(image, texts)
    assert (after < before - 1.0).all()


def test_a_trained_model_grows_the_class(tiny_model, make_batch, tmp_path):
    """``from_pretrained(overrides={"itm_relation_none": True})`` keeps the trained
    relation rows and adds a fresh last one: the relations' logits are unchanged."""
    from neurogshn.errors import CheckpointError
    from neurogshn.model import GSHN

    tiny_model.save_pretrained(tmp_path / "m")
    grown = GSHN.from_pretrained(tmp_path / "m", overrides={"itm_relation_none": True})
    old_w = tiny_model.itm_head.relation_head.weight
    assert grown.itm_head.relation_head.weight.shape == (R + 1, old_w.shape[1])
    torch.testing.assert_close(grown.itm_head.relation_head.weight[:R], old_w)
    tiny_model.eval()
    grown.eval()

    def relation_logits(model):
        with torch.no_grad():
            image = model.encode_image(make_batch())
            nodes, mask = image.dense_nodes()
            pos = image.dense_nodes(image.node_pos)[0]
            return masked_relation_logits(model, CAPTIONS, nodes, mask, pos).logits

    torch.testing.assert_close(relation_logits(grown)[:, :R], relation_logits(tiny_model))
    # without overrides a file of another width is refused, as before
    grown.save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["itm_relation_none"] = False
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        GSHN.from_pretrained(tmp_path / "g")
