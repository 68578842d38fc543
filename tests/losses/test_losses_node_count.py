"""Node count on the ITM head (``itm_concept_count``): number words, the gates' sum and its
radial features, the count's supervision, training and growth on a trained model."""

from __future__ import annotations

import math

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.losses.objective import PretrainBatch, PretrainingObjective, masked_concept_loss
from neurogshn.losses.relation import MaskedLogits, count_loss, masked_concept_logits
from neurogshn.model.node_count import COUNT_WIDTH, MAX_COUNT, NodeCount, number_value

CONCEPTS = ("grass", "two", "four", "sky", "6")
TEXTS = [
    "there are four objects, and the red circle is left of the cube.",
    "a circle above a square",
    "the cube is below the cone, and there is grass in the background.",
    "there is grass and sky, and two cubes.",
]


def test_number_words():
    assert [number_value(w) for w in ("five", " Two ", "12", "0", "zero")] == [5, 2, 12, 0, 0]
    assert [number_value(w) for w in ("grass", "13", "thirteen", "", "five cubes")] == [None] * 5


def test_gates_sum_to_a_count_and_a_grown_classifier_starts_at_zero():
    torch.manual_seed(0)
    count = NodeCount(8, classes=3)
    state, nodes = torch.randn(2, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    logits, counts = count(state, nodes, mask)
    assert logits.shape == (2, 3) and (logits == 0).all()
    gates = count.gates(state, nodes, mask)
    assert (gates[1, 2:] == 0).all() and ((gates[0] > 0) & (gates[0] < 1)).all()
    torch.testing.assert_close(counts, gates.sum(-1))
    # a large gate bias opens every real gate: the count is the number of real nodes
    with torch.no_grad():
        count.gate_bias.fill_(50.0)
    torch.testing.assert_close(count(state, nodes, mask)[1], torch.tensor([4.0, 2.0]))
    # radial features by hand
    features = count.features(torch.tensor([2.0, 2.5]))
    assert features.shape == (2, MAX_COUNT + 1)
    assert features[0, 2].item() == pytest.approx(1.0)
    assert features[0, 3].item() == pytest.approx(math.exp(-1 / (2 * COUNT_WIDTH**2)))
    assert features[1, 2].item() == pytest.approx(features[1, 3].item())


def test_count_loss_by_hand():
    # targets: four, grass, two, 6 → values 4, –, 2, 6
    found = MaskedLogits(
        torch.tensor([0, 1, 2, 3]),
        torch.zeros(4, len(CONCEPTS)),
        torch.tensor([2, 0, 1, 4]),
        counts=torch.tensor([4.2, 9.0, 3.5, 6.4]),
    )
    loss, accuracy = count_loss(found, CONCEPTS)
    # Huber(δ=1): 0.5·0.2², 1.5 − 0.5, 0.5·0.4² over the three number words
    assert loss.item() == pytest.approx((0.02 + 1.0 + 0.08) / 3)
    assert accuracy.item() == pytest.approx(2 / 3)
    assert count_loss(found._replace(targets=torch.tensor([0, 3, 0, 3])), CONCEPTS) is None
    assert count_loss(found._replace(counts=None), CONCEPTS) is None


@pytest.fixture
def count_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name(
        "gshn-tiny", itm_concept_vocab=CONCEPTS, itm_concept_count=True, **tiny_overrides
    )


def test_trains_the_count_from_number_words(count_model, make_batch):
    model = count_model
    image = model.encode_image(make_batch())
    nodes, mask = image.dense_nodes()
    pos = image.dense_nodes(image.node_pos)[0]
    model.eval()
    found = masked_concept_logits(model, TEXTS, nodes, mask, pos)
    assert found.counts.shape == (len(found.rows),)
    assert (found.counts <= mask[found.rows].sum(-1)).all()
    result = masked_concept_loss(model, TEXTS, nodes, mask, image)
    torch.testing.assert_close(result.count_loss, count_loss(found, CONCEPTS)[0])

    model.train()
    out = PretrainingObjective()(model, PretrainBatch(make_batch(), TEXTS, [None] * 4))
    assert "itm_concept_count" in out and "diag/concept_count_accuracy" in out
    out["loss"].backward()
    counter = model.itm_head.concept_count
    assert counter.query.weight.grad.abs().sum() > 0  # from the count loss
    assert counter.classifier.weight.grad.abs().sum() > 0  # from the concept loss


def test_a_trained_model_grows_the_count(tiny_overrides, make_batch, tmp_path):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    trained = GSHN.from_config_name("gshn-tiny", itm_concept_vocab=CONCEPTS, **tiny_overrides)
    trained.save_pretrained(tmp_path / "m")
    grown = GSHN.from_pretrained(tmp_path / "m", overrides={"itm_concept_count": True})
    assert grown.itm_head.concept_count is not None
    trained.eval()
    grown.eval()
    with torch.no_grad():
        graphs = make_batch()
        before = trained.concept_scores(trained.encode_image(graphs), TEXTS)
        after = grown.concept_scores(grown.encode_image(graphs), TEXTS)
    torch.testing.assert_close(after, before)


def test_needs_a_number_word(tiny_overrides):
    from neurogshn.model import GSHN

    with pytest.raises(ConfigError, match="itm_concept_count"):
        GSHN.from_config_name(
            "gshn-tiny",
            itm_concept_vocab=("grass", "sky"),
            itm_concept_count=True,
            **tiny_overrides,
        )
    with pytest.raises(ConfigError, match="itm_concept_count"):
        GSHN.from_config_name("gshn-tiny", itm_concept_count=True, **tiny_overrides)
