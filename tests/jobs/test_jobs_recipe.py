"""Multi-stage recipes: parsing, the stage chain, and resuming a chain after a kill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neurogshn.errors import ConfigError
from neurogshn.jobs.recipe import Recipe, plan_recipe, run_recipe
from neurogshn.training.config import TrainConfig
from neurogshn.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = CONFIGS / "tiny.json"


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(json.dumps(recipe))
    return path


def test_the_10k_recipe_chains_the_measured_stages(tmp_path: Path) -> None:
    recipe = Recipe.from_json(CONFIGS / "recipes" / "gshn_10k.json")
    plans = plan_recipe(recipe, tmp_path / "out")
    assert [p.stage.name for p in plans] == ["base", "sizes", "counts"]
    assert all(p.status == "run" for p in plans)
    files = [f"pretrain_10k{s}" for s in ("", "_sizes", "_counts")]
    for k, (plan, name) in enumerate(zip(plans, files, strict=True)):
        assert plan.run_dir == tmp_path / "out" / f"{k + 1}-{plan.stage.name}"
        own = TrainConfig.from_json(CONFIGS / f"{name}.json")
        differ = plan.config.diff(own)
        if k == 0:
            assert differ == [] and plan.config.model.init_from is None
            continue
        assert plan.config.model.init_from == str(plans[k - 1].final_dir)
        assert differ == ["model.init_from"]
    assert {p.config.data.root for p in plans} == {"data/scenes_10k"}
    assert recipe.evaluate == {
        "task": "retrieval",
        "split": "test",
        "rerank": 64,
        "itc_weight": 0.25,
        "pool_norm": 2,
    }
    assert not (tmp_path / "out").exists()  # planning writes nothing
    makefile = (REPO / "Makefile").read_text()  # make recipe runs this one by default
    assert "RECIPE ?= configs/recipes/gshn_10k.json" in makefile and "recipe $(RECIPE)" in makefile


def test_callers_overrides_come_after_the_stages_own(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.json",
        {
            "name": "r",
            "stages": [
                {"name": "a", "config": str(TINY), "set": ["seed=3", "optim.lr=0.5"]},
                {"name": "b", "config": str(TINY)},
            ],
        },
    )
    plans = plan_recipe(Recipe.from_json(path), tmp_path / "out", ["seed=5"])
    assert [p.config.seed for p in plans] == [5, 5]
    assert plans[0].config.optim.lr == 0.5 and plans[1].config.optim.lr == 2e-3
    assert plans[0].assignments == ["seed=3", "optim.lr=0.5", "seed=5"]


def _one(stage: dict | None = None, **recipe: object) -> dict:
    """A one-stage recipe on tiny.json, with ``stage`` keys and recipe keys changed."""
    return {
        "name": "r",
        "stages": [{"name": "a", "config": "tiny.json", **(stage or {})}],
        **recipe,
    }


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"name": "r", "stages": []}, "'stages' must be a non-empty list"),
        (_one(name=""), "'name' must be a non-empty"),
        (_one(x=1), "unknown recipe key"),
        (_one({"config": "nope.json"}), "nope.json not found"),
        (_one({"name": "a/b"}), "non-empty word"),
        (_one({"lr": 1}), "stage 1: unknown key"),
        (_one({"set": "seed=1"}), "'set' must be a list"),
        ({"name": "r", "stages": _one()["stages"] * 2}, "stage name(s) ['a'] used more than once"),
        (_one(evaluate={"k": 1}), "unknown 'evaluate' key(s) ['k']"),
        (_one(evaluate={"task": "vqa"}), "must be 'retrieval'"),
    ],
)
def test_bad_recipes_are_refused_naming_the_file(
    tmp_path: Path, recipe: dict, message: str
) -> None:
    (tmp_path / "tiny.json").write_text(TINY.read_text())
    path = _write(tmp_path / "bad.json", recipe)
    with pytest.raises(ConfigError) as err:
        Recipe.from_json(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_or_malformed_recipe_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json: recipe file not found"):
        Recipe.from_json(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "r", "stages": [')
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        Recipe.from_json(broken)


def test_bad_stage_assignment_names_the_stage(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.json",
        {"name": "r", "stages": [{"name": "a", "config": str(TINY), "set": ["optim.nope=1"]}]},
    )
    with pytest.raises(ConfigError, match=r"stage 'a'.*optim\.nope"):
        plan_recipe(Recipe.from_json(path), tmp_path / "out")


def _params(final: Path) -> dict[str, torch.Tensor]:
    weights = load_file(str(final / "model.safetensors"))
    return {k: v for k, v in weights.items() if "running_" not in k and "num_batches" not in k}


def test_a_killed_chain_resumes_in_its_stage_and_keeps_finished_ones(
    scenes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 24 training images, batch 8: 3 steps per epoch, 6 per stage; checkpoints every 4 steps.
    path = _write(
        tmp_path / "chain.json",
        {
            "name": "chain",
            "stages": [
                {"name": "first", "config": str(TINY)},
                # lr 0: the second stage's model must come out as the first one left it
                {"name": "second", "config": str(TINY), "set": ["optim.lr=0"]},
            ],
            "evaluate": {"rerank": 4},
        },
    )
    recipe = Recipe.from_json(path)
    out = tmp_path / "out"
    common = [
        f"data.root={json.dumps(str(scenes_root))}",
        "schedule.epochs=2",
        "eval.enabled=false",
        "threads=1",
    ]
    lines: list[str] = []

    first = run_recipe(recipe, out, common, stop_after="first", log=lines.append)
    assert first.trained == ["first"] and first.evaluation is None
    assert [p.status for p in plan_recipe(recipe, out, common)] == ["done", "run"]

    fit = Trainer.fit

    def killed_after_four_steps(self: Trainer, stop_after: int | None = None):
        fit(self, stop_after=4)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", killed_after_four_steps)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, out, common, log=lines.append)
    monkeypatch.setattr(Trainer, "fit", fit)
    plans = plan_recipe(recipe, out, common)
    assert [(p.status, p.resume_step) for p in plans] == [("done", None), ("resume", 4)]
    assert "--resume" in plans[1].command()

    lines.clear()
    done = run_recipe(recipe, out, common, log=lines.append)
    assert done.trained == ["second"]
    assert any("resumed from" in line and "(step 4)" in line for line in lines)
    results = json.loads((out / "2-second" / "results.json").read_text())
    assert results["steps"] == 6
    saved = json.loads((out / "2-second" / "train_config.json").read_text())
    assert saved["model"]["init_from"] == str(out / "1-first" / "final")
    start, end = _params(out / "1-first" / "final"), _params(out / "2-second" / "final")
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["checkpoint"] == str(out / "2-second" / "final")
    assert 0.0 <= evaluation["metrics"]["t2i_R@1"] <= 1.0
    assert done.evaluation == evaluation

    # nothing left to train: the models and the evaluation are kept as they are
    stamp = (out / "2-second" / "final" / "model.safetensors").stat().st_mtime_ns
    again = run_recipe(recipe, out, common, log=lines.append)
    assert again.trained == [] and again.evaluation == evaluation
    assert (out / "2-second" / "final" / "model.safetensors").stat().st_mtime_ns == stamp

    # a recipe changed under a finished stage is refused, naming the stage and the key
    with pytest.raises(ConfigError, match=r"stage 'first'.*optim\.lr"):
        plan_recipe(recipe, out, [*common, "optim.lr=0.1"])
    # so is a trained stage whose predecessor is gone (it started from another model)
    (out / "1-first" / "results.json").unlink()
    with pytest.raises(ConfigError, match=r"stage 'second'.*stage\(s\) \['first'\] before"):
        plan_recipe(recipe, out, common)


def test_cli_dry_run_shows_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    recipe = str(CONFIGS / "recipes" / "gshn_10k.json")
    cmd = [sys.executable, "-m", "neurogshn.cli", "recipe", recipe]
    proc = subprocess.run(
        [*cmd, "--dry-run", "--out", str(out), "--set", "seed=1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count(": to run — ") == 3
    assert f"--set 'model.init_from=\"{out}/2-sizes/final\"'" in proc.stdout
    assert proc.stdout.count("--set 'seed=1'") == 3
    assert not out.exists()
    proc = subprocess.run(
        [*cmd, "--stop-after", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "no stage 'nope'" in proc.stderr
    assert not out.exists()
