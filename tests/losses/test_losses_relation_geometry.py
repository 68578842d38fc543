"""Relation geometry on the ITM head (``itm_relation_geometry``): pointers, displacement
features, the pointers' grounding targets and loss, and growth on a trained model."""

from __future__ import annotations

import math

import pytest
import torch

from neurogshn.data.vocabulary import RELATIONS
from neurogshn.errors import ConfigError
from neurogshn.losses.objective import PretrainBatch, PretrainingObjective, masked_relation_loss
from neurogshn.losses.relation import (
    MaskedLogits,
    masked_relation_logits,
    pointer_loss,
    pointer_targets,
    relation_mentions,
)
from neurogshn.model.relation_geometry import GEOMETRY_SCALE, RelationGeometry

R = len(RELATIONS)
CAPTIONS = [
    "the red circle is left of the blue square.",
    "left of the blue square there is a red circle.",
    "the red circle is above the cross, and the cross is below the square.",
    "there are three objects, and the circle is below the square.",
]


def spans(text: str, *phrases: str) -> list[tuple[int, int, tuple[int, ...]]]:
    """Grounded phrases of ``text``: the span of each phrase (its first occurrence after the
    previous one) with the node given after it."""
    out, at = [], 0
    for phrase, node in phrases:
        start = text.index(phrase, at)
        out.append((start, start + len(phrase), node))
        at = start + len(phrase)
    return out


# graph sizes (4, 1, 3, 6): node 0 is the global node
GROUNDINGS = [
    spans(CAPTIONS[0], ("red circle", (1,)), ("blue square", (2,))),
    spans(CAPTIONS[1], ("blue square", (0,)), ("red circle", (0,))),  # one node: dropped
    spans(CAPTIONS[2], ("red circle", (1,)), ("cross", (2,)), ("cross", (2,)), ("square", (1,))),
    spans(CAPTIONS[3], ("circle", (4,)), ("square", (5,))),
]


def test_displacement_features_and_zero_start():
    torch.manual_seed(0)
    geo = RelationGeometry(8, classes=5, hidden=5)
    state, nodes = torch.randn(2, 8), torch.randn(2, 3, 8)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    pos = torch.tensor([[[0.1, 0.2], [0.7, 0.3], [0.5, 0.9]], [[0.2, 0.2], [0.4, 0.8], [0.0, 0.0]]])
    logits, pointers = geo(state, nodes, mask, pos)
    assert logits.shape == (2, 5) and (logits == 0).all()  # a grown head scores as before
    assert pointers.shape == (2, 2, 3)
    torch.testing.assert_close(pointers.sum(-1), torch.ones(2, 2))
    assert (pointers[1, :, 2] == 0).all()
    # one-hot pointers and an identity classifier expose the features
    with torch.no_grad():
        geo.classifier[0].weight.copy_(torch.eye(5))
        geo.classifier[0].bias.zero_()
        geo.classifier[2].weight.copy_(torch.eye(5))
    one_hot = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    geo.pointers = lambda *args: one_hot  # type: ignore[method-assign]
    logits, _ = geo(state, nodes, mask, pos)
    # sample 0: subject (0.7, 0.3) − object (0.1, 0.2) = (0.6, 0.1); sample 1: (−0.2, −0.6)
    expected = torch.tensor([[0.6, 0.1, 0.6, 0.1, 0.5], [0.0, 0.0, 0.2, 0.6, 0.0]])
    torch.testing.assert_close(logits, expected * GEOMETRY_SCALE)


def test_pointer_targets_are_the_two_phrases_next_to_each_relation():
    rows, copies = [], []
    for i, caption in enumerate(CAPTIONS):
        for start, end, _ in relation_mentions(caption, RELATIONS):
            rows.append(i)
            copies.append((start, end))
    found = MaskedLogits(torch.tensor(rows), torch.zeros(len(rows), R), torch.zeros(len(rows)))
    found = found._replace(spans=tuple(copies))
    keep, first, second = pointer_targets(found, GROUNDINGS, num_nodes=6)
    # caption 1 (fronted) names one node for both phrases: no target
    assert keep.tolist() == [0, 2, 3, 4]
    nodes = lambda m: [row.nonzero().flatten().tolist() for row in m]
    # nearest first: "the red circle is [left of] the blue square" → circle (4 chars) then
    # square; the second relation of caption 2 → "cross" before it, "square" after it
    assert nodes(first) == [[1], [1], [2], [4]]
    assert nodes(second) == [[2], [2], [1], [5]]
    # without groundings, or with indices beyond the nodes, nothing
    assert pointer_targets(found, [None] * 4, 6) is None
    assert pointer_targets(found, GROUNDINGS, num_nodes=1) is None


def test_pointer_loss_takes_the_better_order():
    found = MaskedLogits(torch.tensor([0, 3]), torch.zeros(2, R), torch.zeros(2))
    first_relation = [relation_mentions(CAPTIONS[i], RELATIONS)[0][:2] for i in (0, 3)]
    found = found._replace(spans=tuple(first_relation))
    pointers = torch.zeros(2, 2, 6)
    pointers[0, 0] = torch.tensor([0.1, 0.6, 0.3, 0, 0, 0])  # subject on the circle
    pointers[0, 1] = torch.tensor([0.2, 0.1, 0.7, 0, 0, 0])
    pointers[1, 0] = torch.tensor([0, 0, 0, 0, 0.2, 0.8])  # order crossed
    pointers[1, 1] = torch.tensor([0, 0, 0, 0, 0.5, 0.5])
    loss, accuracy = pointer_loss(found._replace(pointers=pointers), GROUNDINGS)
    row0 = -(math.log(0.6) + math.log(0.7))
    row1 = min(-(math.log(0.2) + math.log(0.5)), -(math.log(0.8) + math.log(0.5)))
    assert loss.item() == pytest.approx(0.5 * (row0 + row1) / 2, rel=1e-6)
    # row 0 peaks right; row 1's crossed order: subject peaks on the square, the object's
    # tie breaks to the circle (argmax takes the first) → both right
    assert accuracy.item() == pytest.approx(1.0)
    assert pointer_loss(found, GROUNDINGS) is None  # no pointers


@pytest.fixture
def geometry_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name("gshn-tiny", itm_relation_geometry=True, **tiny_overrides)


def test_trains_the_pointers_from_groundings(geometry_model, make_batch):
    model = geometry_model
    image = model.encode_image(make_batch())
    nodes, mask = image.dense_nodes()
    pos = image.dense_nodes(image.node_pos)[0]
    model.eval()
    found = masked_relation_logits(model, CAPTIONS, nodes, mask, pos)
    assert found.pointers.shape == (len(found.rows), 2, nodes.shape[1])
    loss = masked_relation_loss(model, CAPTIONS, nodes, mask, image, groundings=GROUNDINGS)
    expected = pointer_loss(found, GROUNDINGS)
    torch.testing.assert_close(loss.pointer_loss, expected[0])
    assert masked_relation_loss(model, CAPTIONS, nodes, mask, image).pointer_loss is None

    model.train()
    batch = PretrainBatch(make_batch(), CAPTIONS, [None] * 4, GROUNDINGS)
    out = PretrainingObjective()(model, batch)
    assert "itm_relation_pointer" in out and "diag/relation_pointer_accuracy" in out
    out["loss"].backward()
    geo = model.itm_head.relation_geometry
    assert geo.query.weight.grad.abs().sum() > 0  # from the pointer loss
    assert geo.classifier[2].weight.grad.abs().sum() > 0  # from the relation loss


def test_a_trained_model_grows_the_geometry(tiny_model, make_batch, tmp_path):
    from neurogshn.model import GSHN

    tiny_model.save_pretrained(tmp_path / "m")
    grown = GSHN.from_pretrained(tmp_path / "m", overrides={"itm_relation_geometry": True})
    assert grown.itm_head.relation_geometry is not None
    tiny_model.eval()
    grown.eval()
    with torch.no_grad():
        graphs = make_batch()
        before = tiny_model.relation_scores(tiny_model.encode_image(graphs), CAPTIONS)
        after = grown.relation_scores(grown.encode_image(graphs), CAPTIONS)
    torch.testing.assert_close(after, before)


def test_needs_node_positions(tiny_overrides):
    from neurogshn.model import GSHN

    with pytest.raises(ConfigError, match="itm_relation_geometry"):
        GSHN.from_config_name(
            "gshn-tiny", itm_relation_geometry=True, itm_node_position=False, **tiny_overrides
        )
