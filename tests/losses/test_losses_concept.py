"""Masked concept prediction: every mention of a concept phrase masked and classified, the
score term, the objective term, growing a saved model a classifier."""

from __future__ import annotations

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.losses.itm import ITMHead
from neurogshn.losses.relation import masked_concept_logits

CONCEPTS = ("grass", "sky", "two", "four")
TEXTS = [
    "there are four objects, and the red circle is left of the cube.",
    "a circle above a square",
    "the cube is below the cone, and there is grass in the background.",
    "there is grass and sky, and two cubes.",
]


@pytest.fixture
def concept_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_concept_vocab=CONCEPTS)


def _dense(model, image):
    nodes, mask = image.dense_nodes()
    return nodes, mask, image.dense_nodes(image.node_pos)[0]


def test_every_mention_is_masked_and_scored(concept_model, make_batch):
    model = concept_model.eval()
    with torch.no_grad():
        image = model.encode_image(make_batch())
        nodes, mask, pos = _dense(model, image)
        rows, logits, concept, _ = masked_concept_logits(model, TEXTS, nodes, mask, pos)[:4]
        scores = model.concept_scores(image, TEXTS)
        text = model.encode_text(TEXTS)
        with_texts = model.itm_scores(image, text, TEXTS)
        without = model.itm_scores(image, text)
        relation = model.relation_scores(image, TEXTS)
    assert rows.tolist() == [0, 2, 3, 3, 3] and concept.tolist() == [3, 0, 0, 1, 2]
    assert logits.shape == (5, len(CONCEPTS))
    stated = logits.log_softmax(-1).gather(1, concept[:, None]).squeeze(1)
    expected = torch.stack([stated[0], stated.new_zeros(()), stated[1], stated[2:].sum()])
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(with_texts, without + relation + scores)


def test_objective_trains_the_concept_classifier(concept_model, make_batch, captions):
    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective

    torch.manual_seed(0)
    texts = [TEXTS[0], *captions[1:]]  # "four", "grass"
    out = PretrainingObjective()(concept_model, PretrainBatch(make_batch(), texts, []))
    assert torch.isfinite(out["itm_concept"]) and out["itm_concept"] > 0
    assert 0.0 <= float(out["diag/concept_accuracy"]) <= 1.0
    out["loss"].backward()
    assert concept_model.itm_head.concept_head.weight.grad.abs().sum() > 0
    # no concept named: no term
    none = [captions[0], captions[1], captions[3], captions[0]]
    out = PretrainingObjective()(concept_model, PretrainBatch(make_batch(), none, []))
    assert "itm_concept" not in out


def test_concept_head_reads_which_node_is_there():
    """'<mask>' against one of three node kinds: the class is which kind is present, read
    only through cross-attention at the mask position."""
    torch.manual_seed(0)
    head = ITMHead(16, heads=2, layers=1, dropout=0.0, concept_classes=3)
    kinds, msk = torch.randn(3, 16), torch.randn(16)
    opt = torch.optim.Adam(head.parameters(), 3e-3)

    def batch(n: int):
        label = torch.randint(0, 3, (n,))
        nodes = kinds[label][:, None, :]
        ones = torch.ones(n, 1, dtype=torch.bool)
        return (
            msk.expand(n, 1, 16),
            ones,
            nodes,
            ones,
            None,
            torch.zeros(n, dtype=torch.long),
            label,
        )

    for _ in range(150):
        *inputs, label = batch(64)
        loss = torch.nn.functional.cross_entropy(head.concept_logits(*inputs), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    *inputs, label = batch(256)
    with torch.no_grad():
        acc = (head.concept_logits(*inputs).argmax(-1) == label).float().mean()
    assert float(acc) > 0.95
    with pytest.raises(ValueError, match="concept classifier"):
        ITMHead(16).concept_logits(*inputs)


def test_grow_a_saved_model_a_concept_classifier(tiny_model, tmp_path, make_batch):
    from neurogshn.model import GSHN

    tiny_model.save_pretrained(tmp_path / "m")
    grown = GSHN.from_pretrained(tmp_path / "m", overrides={"itm_concept_vocab": list(CONCEPTS)})
    assert grown.config.itm_concept_vocab == CONCEPTS
    assert grown.itm_head.concept_head.out_features == len(CONCEPTS)
    for name, value in tiny_model.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[name], value)
    with pytest.raises(ConfigError, match="itm_concept_vocab"):
        GSHN.from_pretrained(tmp_path / "m", overrides={"itm_concept_vocab": ["sky", "sky"]})
    with pytest.raises(ConfigError, match="itm_concept_vocab"):
        GSHN.from_pretrained(tmp_path / "m", overrides={"itm_concept_vocab": ["above"]})
    with pytest.raises(ConfigError, match="concept classifier"):
        tiny_model.concept_scores(tiny_model.encode_image(make_batch()), TEXTS)
