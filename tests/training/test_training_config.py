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
    """configs/pretrain_default.json is the code's defaults plus the benchmark's choice of
    hard-negative kinds (the code knows no kinds: ``None`` is every kind of the file)."""
    default = TrainConfig.from_json(CONFIGS / "pretrain_default.json")
    assert TrainConfig().diff(default) == [
        "data.hard_negative_kinds",
        "eval.hard_negative_kinds",
    ], "configs/pretrain_default.json and TrainConfig() defaults have drifted apart"
    assert TrainConfig().data.hard_negative_kinds is None
    assert TrainConfig().eval.hard_negative_kinds is None
    assert default.data.hard_negative_kinds == ["relation_swap", "attribute_swap", "object_replace"]
    assert default.data.generate.heldout_phrasings is True
    assert TrainConfig().data.generate.heldout_phrasings is True
    tiny = TrainConfig.from_json(CONFIGS / "tiny.json")
    assert tiny.schedule.batch_size <= 16
    assert tiny.data.hard_negative_kinds == default.data.hard_negative_kinds
    assert tiny.eval.hard_negative_kinds == default.eval.hard_negative_kinds


def test_generated_benchmark_gets_held_out_phrasings(tmp_path: Path) -> None:
    """``data.generate.heldout_phrasings`` reaches the generator: test_seen (the test scenes in
    the training wording) is written beside train, val and test."""
    from neurogshn.jobs.pretrain import ensure_scenes
    from neurogshn.training.distributed import DistInfo

    sizes = ["data.generate.train=2", "data.generate.val=1", "data.generate.test=1"]
    for heldout in (True, False):
        root = tmp_path / str(heldout)
        cfg = TrainConfig().with_overrides(
            [
                f"data.root={root}",
                *sizes,
                "data.generate.image_size=40",
                f"data.generate.heldout_phrasings={json.dumps(heldout)}",
            ]
        )
        said: list[str] = []
        assert ensure_scenes(cfg, DistInfo(), said.append) == root
        manifest = json.loads((root / "annotations" / "scenes.json").read_text())
        assert manifest["heldout_phrasings"] is heldout
        assert ("test_seen" in manifest["splits"]) is heldout
        assert (root / "annotations" / "captions_test_seen.json").is_file() is heldout
        assert said and str(root) in said[0]


def test_10k_config_only_adds_training_images() -> None:
    """configs/pretrain_10k.json is the default recipe on 5x the training images: same test
    split (sizes, seed, image size), same model, losses, optimiser, epochs and kinds."""
    default = TrainConfig.from_json(CONFIGS / "pretrain_default.json")
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
    assert second.model.init_from is None  # supplied per run by the recipe's chaining
    assert _recipe_stages() == ["pretrain_10k.json", "pretrain_10k_sizes.json",
                                "pretrain_10k_counts.json"]  # fmt: skip


def _recipe_stages() -> list[str]:
    """The stage config files of the recipe `make recipe` runs by default."""
    recipe = json.loads((CONFIGS / "recipes" / "gshn_10k.json").read_text())
    return [Path(stage["config"]).name for stage in recipe["stages"]]


def test_10k_counts_config_is_a_third_stage_of_the_10k_recipe() -> None:
    """configs/pretrain_10k_counts.json continues a pretrain_10k_sizes checkpoint on the same
    data with count flips and background swaps added (each listed four times: they exist for
    few captions), at a lower learning rate; the recipe chains it after the second stage."""
    second = TrainConfig.from_json(CONFIGS / "pretrain_10k_sizes.json")
    third = TrainConfig.from_json(CONFIGS / "pretrain_10k_counts.json")
    assert set(second.diff(third)) <= {
        "checkpoint.out_dir",
        "data.hard_negative_kinds",
        "model.overrides.itm_attention_sink",
        "optim.lr",
        "schedule.epochs",
    }
    assert third.model.overrides == {}
    assert third.data.root == second.data.root
    kinds = list(third.data.hard_negative_kinds)
    assert kinds[: len(second.data.hard_negative_kinds)] == list(second.data.hard_negative_kinds)
    assert kinds.count("count_flip") == kinds.count("stuff_replace") == 4
    assert third.optim.lr < second.optim.lr
    assert third.model.init_from is None  # supplied per run by the recipe's chaining
    assert _recipe_stages()[2] == "pretrain_10k_counts.json"


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


@pytest.mark.parametrize(
    ("assignment", "suggested"),
    [
        ("optim.epochs=3", "schedule.epochs"),  # a key of another section
        ("shedule.epochs=3", "schedule.epochs"),  # a misspelt section
        ("optim.lrr=1", "optim.lr"),
        ("model.overide.time_steps=8", "model.overrides"),
    ],
)
def test_unknown_keys_suggest_the_closest_valid_key(assignment: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig().with_overrides([assignment])
    assert f"did you mean {suggested}" in str(err.value)
    key = assignment.split("=")[0]
    section, leaf = key.split(".")[0], key.split(".")[1]
    with pytest.raises(ConfigError) as from_file:
        TrainConfig.from_dict({section: {leaf: 1}}, source="cfg.json")
    if section in ("optim", "model"):
        assert "cfg.json: unknown key(s)" in str(from_file.value)
        assert suggested in str(from_file.value)


def test_unknown_model_field_suggests_the_closest() -> None:
    from neurogshn.model.config import GSHNConfig

    with pytest.raises(ConfigError, match=r"did you mean embed_dim\?"):
        GSHNConfig.from_dict({"embed_dimm": 32})
