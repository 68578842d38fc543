"""Fitting the text-only priors after the fact (``fit_text_prior``, ``neurogshn fit-prior``)."""

from __future__ import annotations

import json

import pytest
import torch
from gshn_fixtures import tiny_overrides  # noqa: F401  (pytest fixture)

from neurogshn.errors import ConfigError
from neurogshn.losses.relation import relation_targets
from neurogshn.training.text_prior import fit_text_prior, masked_states

CONCEPTS = ("sky", "grass", "two", "three", "four")
# counts and backgrounds never share a slot: a prior that reads the words around the mask
# puts its mass on the right kind, one from the phrase frequencies alone cannot
CAPTIONS = [
    f"there are {n} objects, and the red cube is {r} the ball."
    for n in ("two", "three", "four")
    for r in ("left of", "above")
] + [
    f"the red cube is {r} the ball, and there is {s} in the background."
    for s in ("sky", "grass")
    for r in ("right of", "below", "above")
]


@pytest.fixture
def concept_model(tiny_overrides):  # noqa: F811
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name(
        "gshn-tiny", **tiny_overrides, itm_concept_vocab=CONCEPTS, itm_text_prior=True
    )


def test_fit_learns_the_slot_and_touches_nothing_else(concept_model):
    model = concept_model
    before = {n: p.clone() for n, p in model.state_dict().items() if not n.startswith("text_")}
    fits = {f.vocabulary: f for f in fit_text_prior(model, CAPTIONS * 4, epochs=60, lr=3e-2)}
    assert set(fits) == {"relation", "concept"}
    concept = fits["concept"]
    assert concept.phrases == 4 * 12
    # frequencies 1/6 for each count, 1/4 for each background: H = ln 6 ... measured here
    assert concept.frequency_entropy == pytest.approx(
        -(3 * (1 / 6) * torch.tensor(1 / 6).log() + 2 * 0.25 * torch.tensor(0.25).log()).item()
    )
    assert concept.cross_entropy < concept.frequency_entropy - 0.5
    assert fits["relation"].phrases == 4 * 12
    # it starts at the frequencies and keeps its best epoch, so it ends no worse than them
    assert fits["relation"].cross_entropy <= fits["relation"].frequency_entropy + 1e-6
    with torch.no_grad():
        states, targets = masked_states(model, CAPTIONS, CONCEPTS, "all", batch_size=8)
        q = model.text_prior.concept_logits(states).softmax(-1)
    count_slot = targets >= 2
    on_counts, on_stuff = q[count_slot][:, 2:].sum(-1), q[~count_slot][:, :2].sum(-1)
    assert float(on_counts.min()) > 0.75 and float(on_counts.mean()) > 0.9
    assert float(on_stuff.min()) > 0.75 and float(on_stuff.mean()) > 0.9
    after = model.state_dict()
    for name, value in before.items():
        torch.testing.assert_close(after[name], value)


def test_fit_is_deterministic_and_restores_mode(concept_model):
    concept_model.train()
    fit_text_prior(concept_model, CAPTIONS, epochs=3, seed=1)
    first = {n: p.clone() for n, p in concept_model.text_prior.state_dict().items()}
    assert concept_model.training
    fit_text_prior(concept_model, CAPTIONS, epochs=3, seed=1)
    for name, value in concept_model.text_prior.state_dict().items():
        torch.testing.assert_close(value, first[name])


def test_fit_errors(tiny_overrides):  # noqa: F811
    from neurogshn.model import GSHN

    plain = GSHN.from_config_name("gshn-tiny", **tiny_overrides)
    with pytest.raises(ConfigError, match="no text prior"):
        fit_text_prior(plain, CAPTIONS)
    grown = GSHN.from_config_name(
        "gshn-tiny", **tiny_overrides, itm_concept_vocab=CONCEPTS, itm_text_prior=True
    )
    with pytest.raises(ConfigError, match="concept vocabulary"):
        fit_text_prior(grown, ["a red cube left of a ball"])
    assert relation_targets(("a ball",), ("above",), "[MASK]", "all") == ([], [], [])


def test_cli_fit_prior(tiny_overrides, scenes_root, tmp_path, capsys):  # noqa: F811
    from neurogshn.cli import main
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_concept_vocab=CONCEPTS)
    model.save_pretrained(tmp_path / "m")
    out, report = tmp_path / "m-prior", tmp_path / "fit.json"
    argv = ["fit-prior", "--checkpoint", str(tmp_path / "m"), "--data", str(scenes_root)]
    assert main([*argv, "--out", str(out), "--epochs", "2", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "relation" in printed and "concept" in printed and str(out) in printed
    loaded = GSHN.from_pretrained(out)
    assert loaded.config.itm_text_prior and loaded.text_prior.concept.out_features == 5
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    fits = {f["vocabulary"]: f for f in json.loads(report.read_text())["fits"]}
    assert fits["relation"]["phrases"] > 0 and fits["concept"]["phrases"] > 0
    # never over the checkpoint itself
    assert main([*argv, "--out", str(tmp_path / "m")]) == 2
    assert "is the checkpoint itself" in capsys.readouterr().err
