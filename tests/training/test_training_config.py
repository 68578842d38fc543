"""TrainConfig: JSON round-trip, --set overrides with type checks, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurogshn.errors import ConfigError
from neurogshn.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig().with_overrides(["optim.lr=3e-4", "model.overrides.time_steps=8"])
    cfg.to_json(tmp_path / "c.json")
    back = TrainConfig.from_json(tmp_path / "c.json")
    assert back == cfg
    assert back.optim.lr == 3e-4 and back.model.overrides == {"time_steps": 8}


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"schedule": {"epochs": 3}, "seed": 7}))
    cfg = TrainConfig.from_json(tmp_path / "p.json")
    assert cfg.schedule.epochs == 3 and cfg.seed == 7
    assert cfg.optim == TrainConfig().optim


def test_set_parses_and_checks_types() -> None:
    cfg = TrainConfig().with_overrides(
        [
            "schedule.max_steps=12",
            "schedule.max_steps=null",
            "optim.weight_decay=0",
            "data.root=some/dir",
            "log.progress=false",
            "eval.recall_ks=[1,3]",
            "loss.itm=0.25",
        ]
    )
    assert cfg.schedule.max_steps is None
    assert isinstance(cfg.optim.weight_decay, float) and cfg.optim.weight_decay == 0.0
    assert cfg.data.root == "some/dir" and cfg.log.progress is False
    assert cfg.eval.recall_ks == [1, 3] and cfg.loss.as_overrides() == {"itm": 0.25}


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("optim.lrr=1", "unknown key 'lrr'"),
        ("nope.x=1", "unknown key 'nope'"),
        ("schedule.epochs=1.5", "schedule.epochs must be int"),
        ("schedule.epochs=true", "schedule.epochs must be int"),
        ("log.progress=3", "log.progress must be bool"),
        ("optim.lr=fast", "optim.lr must be float"),
        ("optim=3", "optim must be an object"),
        ("schedule.batch_size", "expected key.path=value"),
    ],
)
def test_set_errors_name_the_key(assignment: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig().with_overrides([assignment])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"optim": {"lr": 1e-3, "momentum": 0.9}}')
    with pytest.raises(ConfigError, match=r"bad\.json.*optim\.momentum"):
        TrainConfig.from_json(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"optim": ')
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        TrainConfig.from_json(broken)
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_json(tmp_path / "missing.json")


def test_diff_lists_changed_keys() -> None:
    a = TrainConfig()
    b = a.with_overrides(["optim.lr=0.5", "device=cpu", "model.overrides.embed_dim=64"])
    assert a.diff(b) == ["device", "model.overrides.embed_dim", "optim.lr"]
    assert a.diff(b, ignore=("device", "model")) == ["optim.lr"]


def test_shipped_configs_load_and_default_matches_code() -> None:
    default = TrainConfig.from_json(CONFIGS / "pretrain_default.json")
    assert default == TrainConfig(), (
        "configs/pretrain_default.json and TrainConfig() defaults have drifted apart"
    )
    tiny = TrainConfig.from_json(CONFIGS / "tiny.json")
    assert tiny.schedule.batch_size <= 16


def test_10k_config_only_adds_training_images() -> None:
    """configs/pretrain_10k.json is the default recipe on 5x the training images: same test
    split (sizes, seed, image size), same model, losses, optimiser and epochs."""
    default = TrainConfig()
    large = TrainConfig.from_json(CONFIGS / "pretrain_10k.json")
    assert default.diff(large) == [
        "checkpoint.every_steps",
        "checkpoint.out_dir",
        "data.generate.train",
        "data.root",
    ]
    assert large.data.generate.train == 5 * default.data.generate.train
    assert large.data.root != default.data.root  # never mixed with the default data set


def test_10k_sizes_config_is_a_second_stage_of_the_10k_recipe() -> None:
    """configs/pretrain_10k_sizes.json continues a pretrain_10k checkpoint on the same data:
    only the hard-negative kinds (size_flip added), the learning rate, the epochs and where
    the run goes differ; the weights come from ``model.init_from`` (the Makefile's FROM)."""
    first = TrainConfig.from_json(CONFIGS / "pretrain_10k.json")
    second = TrainConfig.from_json(CONFIGS / "pretrain_10k_sizes.json")
    assert first.diff(second) == [
        "checkpoint.out_dir",
        "data.hard_negative_kinds",
        "optim.lr",
        "schedule.epochs",
    ]
    assert second.data.root == first.data.root
    assert list(second.data.hard_negative_kinds) == [
        *first.data.hard_negative_kinds,
        "size_flip",
    ]
    assert second.optim.lr < first.optim.lr
    assert second.model.init_from is None  # supplied per run: make pretrain-10k-sizes [FROM=DIR]
    makefile = (CONFIGS.parent / "Makefile").read_text()
    assert "configs/pretrain_10k_sizes.json" in makefile
    # The target looks for the first stage's runs where that config writes them.
    assert f"ls -d {first.checkpoint.out_dir}/*/final" in makefile


def test_10k_counts_config_is_a_third_stage_of_the_10k_recipe() -> None:
    """configs/pretrain_10k_counts.json continues a pretrain_10k_sizes checkpoint on the same
    data with count flips and background swaps added (each listed four times: they exist for
    few captions), at a lower learning rate; its Makefile target finds the second stage."""
    second = TrainConfig.from_json(CONFIGS / "pretrain_10k_sizes.json")
    third = TrainConfig.from_json(CONFIGS / "pretrain_10k_counts.json")
    assert set(second.diff(third)) <= {
        "checkpoint.out_dir",
        "data.hard_negative_kinds",
        "model.overrides.itm_attention_sink",
        "optim.lr",
        "schedule.epochs",
    }
    assert third.model.overrides == {"itm_attention_sink": True}  # grown on loading
    assert third.data.root == second.data.root
    kinds = list(third.data.hard_negative_kinds)
    assert kinds[: len(second.data.hard_negative_kinds)] == list(second.data.hard_negative_kinds)
    assert kinds.count("count_flip") == kinds.count("stuff_replace") == 4
    assert third.optim.lr < second.optim.lr
    assert third.model.init_from is None  # make pretrain-10k-counts [FROM=DIR]
    makefile = (CONFIGS.parent / "Makefile").read_text()
    assert "configs/pretrain_10k_counts.json" in makefile
    assert f"ls -d {second.checkpoint.out_dir}/*/final" in makefile


def test_10k_concepts_config_is_the_counts_stage_reading_the_whole_caption() -> None:
    """configs/pretrain_10k_concepts.json is the third stage with every relation phrase masked
    and the stuff classes and count words predicted where masked; nothing else differs."""
    from neurogshn.data.vocabulary import NUMBER_WORDS, STUFF

    counts = TrainConfig.from_json(CONFIGS / "pretrain_10k_counts.json")
    concepts = TrainConfig.from_json(CONFIGS / "pretrain_10k_concepts.json")
    assert set(counts.diff(concepts)) <= {
        "checkpoint.out_dir",
        "model.overrides.itm_relation_mentions",
        "model.overrides.itm_concept_vocab",
    }
    assert concepts.model.overrides == {
        "itm_attention_sink": True,
        "itm_relation_mentions": "all",
        "itm_concept_vocab": [*STUFF, *NUMBER_WORDS[1:]],
    }
    assert concepts.checkpoint.out_dir != counts.checkpoint.out_dir
    # every override is a field the model knows, and the grown model is valid
    from neurogshn.model.config import GSHNConfig

    grown = GSHNConfig().replace(**concepts.model.overrides)
    assert grown.itm_concept_vocab == (*STUFF, *NUMBER_WORDS[1:])


def test_10k_relations_config_is_the_concepts_stage_with_no_relation() -> None:
    """configs/pretrain_10k_relations.json (a fourth stage, from a concept-stage checkpoint)
    adds the unrelated-pair negatives, the text prior, the "no relation" class and the
    relation geometry and the node count (their fresh modules at 10× the learning rate);
    nothing else differs from the concept stage but the budget."""
    concepts = TrainConfig.from_json(CONFIGS / "pretrain_10k_concepts.json")
    relations = TrainConfig.from_json(CONFIGS / "pretrain_10k_relations.json")
    assert set(concepts.diff(relations)) <= {
        "checkpoint.out_dir",
        "data.hard_negative_kinds",
        "model.overrides.itm_text_prior",
        "model.overrides.itm_relation_none",
        "model.overrides.itm_relation_geometry",
        "model.overrides.itm_concept_count",
        "optim.lr_scale.itm_head.relation_geometry.",
        "optim.lr_scale.itm_head.concept_count.",
        "optim.lr_scale.itm_head.concept_count.classifier.",
        "schedule.epochs",
    }
    assert relations.model.overrides == {
        **concepts.model.overrides,
        "itm_text_prior": True,
        "itm_relation_none": True,
        "itm_relation_geometry": True,
        "itm_concept_count": True,
    }
    assert relations.optim.lr_scale == {
        "itm_head.relation_geometry.": 10,
        "itm_head.concept_count.": 10,
        "itm_head.concept_count.classifier.": 100,
    }
    assert relations.optim.lr == concepts.optim.lr and relations.schedule.epochs == 4
    kinds = list(relations.data.hard_negative_kinds)
    assert kinds == [*concepts.data.hard_negative_kinds, "unrelated_pair", "unrelated_pair"]
    assert relations.checkpoint.out_dir != concepts.checkpoint.out_dir
    assert relations.model.init_from is None  # --set model.init_from=... (docs/training.md)
    from neurogshn.model.config import GSHNConfig

    grown = GSHNConfig().replace(**relations.model.overrides)
    assert grown.itm_relation_none and grown.itm_text_prior and grown.itm_relation_geometry
    assert grown.itm_concept_count


def test_lr_scale_gives_a_prefix_its_own_learning_rate():
    """``optim.lr_scale``: parameters under the longest matching prefix train at lr × scale
    (with and without weight decay, text parameters at their own lr); bad scales refused."""
    from torch import nn

    from neurogshn.training.trainer import parameter_groups

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
            self.text_encoder = nn.Linear(2, 2)

    cfg = TrainConfig().with_overrides(
        ["optim.lr=0.001", "optim.text_lr=0.0001", 'optim.lr_scale={"head.": 10, "head.1.": 2}']
    )
    model = Model()
    groups = parameter_groups(model, cfg)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    expected = {
        "head.0.weight": 0.01,
        "head.0.bias": 0.01,
        "head.1.weight": 0.002,
        "head.1.bias": 0.002,
        "text_encoder.weight": 0.0001,
        "text_encoder.bias": 0.0001,
    }
    assert {n: lr_of[id(p)] for n, p in model.named_parameters()} == pytest.approx(expected)
    assert sum(len(g["params"]) for g in groups) == 6
    assert {g["name"] for g in groups} >= {"main:head.", "main_no_decay:head.1."}
    for bad in ("0", "-1", "true", '"x"'):
        with pytest.raises(ConfigError, match="lr_scale"):
            TrainConfig().with_overrides([f'optim.lr_scale={{"head.": {bad}}}'])
