"""The text-only prior of the masked relation / concept classifiers: scores as pointwise
mutual information, a constant per caption (text→image rankings unchanged), trained only
through detached text states."""

from __future__ import annotations

import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.losses.relation import masked_concept_logits, masked_relation_logits
from neurogshn.model.config import GSHNConfig

CONCEPTS = ("grass", "sky", "two", "four")
TEXTS = [
    "there are four objects, and the red circle is left of the cube.",
    "a circle above a square",
    "the cube is below the cone, and there is grass in the background.",
    "there is grass and sky, and two cubes left of a cone.",
]


@pytest.fixture
def prior_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    model = GSHN.from_config_name(
        "gshn-tiny",
        **tiny_overrides,
        itm_concept_vocab=CONCEPTS,
        itm_relation_mentions="all",
        itm_text_prior=True,
    )
    # a prior far from uniform, so that subtracting it is visible
    torch.nn.init.normal_(model.text_prior.concept.weight, std=2.0)
    torch.nn.init.normal_(model.text_prior.relation.weight, std=2.0)
    return model.eval()


def _stated(logits, targets):
    return logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def test_scores_are_log_probability_less_log_prior(prior_model, make_batch):
    model = prior_model
    with torch.no_grad():
        image = model.encode_image(make_batch())
        nodes, mask = image.dense_nodes()
        pos = image.dense_nodes(image.node_pos)[0]
        concept = masked_concept_logits(model, TEXTS, nodes, mask, pos)
        relation = masked_relation_logits(model, TEXTS, nodes, mask, pos)
        concept_scores = model.concept_scores(image, TEXTS)
        relation_scores = model.relation_scores(image, TEXTS)
        text = model.encode_text(TEXTS)
        total = model.itm_scores(image, text, TEXTS)
        base = model.itm_scores(image, text)
    assert concept.prior_logits is not None and concept.prior_logits.shape == (5, 4)
    assert relation.prior_logits is not None and relation.rows.tolist() == [0, 1, 2, 3]
    pmi = _stated(concept.logits, concept.targets) - _stated(concept.prior_logits, concept.targets)
    expected = torch.zeros(4).index_add(0, concept.rows, pmi)
    torch.testing.assert_close(concept_scores, expected)
    assert float(concept_scores[1]) == 0.0  # states no concept
    pmi = _stated(relation.logits, relation.targets) - _stated(
        relation.prior_logits, relation.targets
    )
    torch.testing.assert_close(relation_scores, torch.zeros(4).index_add(0, relation.rows, pmi))
    torch.testing.assert_close(total, base + relation_scores + concept_scores)


def test_prior_is_a_constant_per_caption(prior_model, make_batch):
    """Against four images one caption's score moves by the same amount: the order of the
    images for that caption (text→image retrieval) is what it was without the prior."""
    model = prior_model
    texts = [TEXTS[3]] * 4
    with torch.no_grad():
        image = model.encode_image(make_batch())
        text = model.encode_text(texts)
        with_prior = model.itm_scores(image, text, texts)
        prior = model.text_prior
        del model.text_prior
        plain = model.itm_scores(image, text, texts)
        model.text_prior = prior
    shift = with_prior - plain
    torch.testing.assert_close(shift, shift[:1].expand(4))
    assert float(shift.abs()[0]) > 1e-3
    assert with_prior.argsort().tolist() == plain.argsort().tolist()


def test_objective_trains_the_prior_alone(prior_model, make_batch):
    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective

    model = prior_model.train()
    out = PretrainingObjective()(model, PretrainBatch(make_batch(), TEXTS, []))
    assert {"itm_relation_prior", "itm_concept_prior"} <= set(out)
    assert float(out["itm_concept_prior"].detach()) > 0
    out["itm_concept_prior"].backward()
    assert model.text_prior.concept.weight.grad.abs().sum() > 0
    others = [p.grad for n, p in model.named_parameters() if not n.startswith("text_prior.")]
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in others)


def test_config(tiny_overrides):
    cfg = GSHNConfig(**tiny_overrides, itm_text_prior=True)
    assert GSHNConfig.from_dict(cfg.to_dict()).itm_text_prior is True
    legacy = cfg.to_dict()
    del legacy["itm_text_prior"]
    assert GSHNConfig.from_dict(legacy).itm_text_prior is False
    with pytest.raises(ConfigError, match="itm_text_prior"):
        GSHNConfig(**tiny_overrides, itm_text_prior=True, itm_weight=0.0)
    with pytest.raises(ConfigError, match="itm_text_prior"):
        GSHNConfig(**tiny_overrides, itm_text_prior=True, itm_relation_weight=0.0)
