"""Multi-stage pretraining recipes: a chain of TrainConfigs, each stage starting from the last.

The best checkpoints of this project come from several pretraining stages on the same data,
each one a config file that starts from the previous stage's ``final/`` (``model.init_from``)
and changes the objective (more hard-negative kinds, another learning rate). A recipe file
names those stages in order, so that one command trains
the whole chain, resumes it after a kill, and evaluates the result::

    {
      "name": "gshn_10k",
      "description": "…",
      "stages": [
        {"name": "base", "config": "../pretrain_10k.json"},
        {"name": "sizes", "config": "../pretrain_10k_sizes.json"},
        {"name": "counts", "config": "../pretrain_10k_counts.json",
         "set": ["schedule.epochs=8"]}
      ],
      "evaluate": {"task": "retrieval", "rerank": 64, "itc_weight": 0.25, "pool_norm": 2}
    }

Config paths are relative to the recipe file. Stage ``k`` (1-based) runs in
``<out>/<k>-<name>/`` with ``--set`` assignments applied in this order: the stage's ``set``,
then the caller's (e.g. ``seed=1``, ``device=cuda``), then ``model.init_from`` pointing at the
previous stage's ``final/`` (the first stage keeps its config's own ``init_from``).

State is read from the run directories, so a second invocation continues where the first
stopped: a stage whose ``results.json`` names its ``final/`` is done (checked against the
configuration it was trained with, allowing what a resume allows: a recipe changed under a
finished stage is refused rather than silently mixed); a stage with checkpoints resumes from
the newest one, exactly (the trainer's resume); the others run from the start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neurogshn.errors import ConfigError
from neurogshn.jobs.pretrain import RESULTS_FILE, run_pretraining
from neurogshn.training.checkpoint import TRAIN_CONFIG_FILE, TRAINER_FILE, CheckpointManager
from neurogshn.training.config import TrainConfig, read_json_file
from neurogshn.training.trainer import RESUME_MAY_DIFFER
from neurogshn.utils.io import write_json_atomic

#: the evaluation's JSON, beside the stage directories
EVALUATION_FILE = "evaluation.json"
#: the ``evaluate`` block's keys → :func:`neurogshn.tasks.evaluate.evaluate_checkpoint` options
EVALUATE_KEYS: tuple[str, ...] = ("task", "split", "rerank", "itc_weight", "pool_norm")

StageStatus = Literal["done", "resume", "run"]


@dataclass(frozen=True)
class RecipeStage:
    """One pretraining stage of a recipe.

    Args:
        name: short name, unique in the recipe (also names the stage's run directory).
        config: path of the stage's TrainConfig JSON (absolute once the recipe is loaded).
        overrides: ``key.path=value`` assignments applied on top of the config file.
    """

    name: str
    config: Path
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A named chain of pretraining stages, and how to evaluate the last one.

    Args:
        name: the recipe's name (the default output directory is ``runs/<name>``).
        stages: the stages, in training order.
        description: one paragraph for people.
        evaluate: options of the final evaluation (keys of :data:`EVALUATE_KEYS`), or ``None``.
        source: the file the recipe was read from.
    """

    name: str
    stages: tuple[RecipeStage, ...]
    description: str = ""
    evaluate: dict[str, Any] | None = None
    source: Path | None = None

    @classmethod
    def from_json(cls, path: str | Path) -> Recipe:
        """Read a recipe file; config paths are resolved against the file's directory.

        Raises:
            ConfigError: unreadable file, unknown keys, missing or duplicate stage names, a
                stage config that does not exist, a bad ``evaluate`` block.
        """
        p = Path(path)
        return cls.from_dict(read_json_file(p, "recipe"), base=p.resolve().parent, source=p)

    @classmethod
    def from_dict(
        cls, data: Any, base: str | Path = ".", source: str | Path | None = None
    ) -> Recipe:
        """Build from the JSON object of a recipe file (see the module docstring)."""
        where = str(source) if source is not None else "<recipe>"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a recipe must be a JSON object")
        unknown = sorted(set(data) - {"name", "description", "stages", "evaluate"})
        if unknown:
            raise ConfigError(f"{where}: unknown recipe key(s) {unknown}")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: 'name' must be a non-empty string")
        raw_stages = data.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise ConfigError(f"{where}: 'stages' must be a non-empty list")
        stages = tuple(
            _stage(item, i, Path(base), where) for i, item in enumerate(raw_stages, start=1)
        )
        names = [s.name for s in stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{where}: stage name(s) {repeated} used more than once")
        evaluate = data.get("evaluate")
        if evaluate is not None:
            if not isinstance(evaluate, dict):
                raise ConfigError(f"{where}: 'evaluate' must be an object or null")
            bad = sorted(set(evaluate) - set(EVALUATE_KEYS))
            if bad:
                raise ConfigError(
                    f"{where}: unknown 'evaluate' key(s) {bad}; known: {list(EVALUATE_KEYS)}"
                )
            evaluate = {"task": "retrieval", "split": "test", **evaluate}
            if evaluate["task"] != "retrieval":
                raise ConfigError(
                    f"{where}: 'evaluate.task' must be 'retrieval' (the tasks with heads need "
                    "`neurogshn finetune` first)"
                )
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}: 'description' must be a string")
        return cls(
            name.strip(),
            stages,
            description,
            evaluate,
            Path(source) if source is not None else None,
        )

    def stage_index(self, name: str) -> int:
        """0-based position of the stage called ``name``."""
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise ConfigError(
            f"{self.source or self.name}: no stage {name!r}; stages: "
            f"{[s.name for s in self.stages]}"
        )


def _stage(item: Any, index: int, base: Path, where: str) -> RecipeStage:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: stage {index} must be an object")
    unknown = sorted(set(item) - {"name", "config", "set"})
    if unknown:
        raise ConfigError(f"{where}: stage {index}: unknown key(s) {unknown}")
    name, config = item.get("name"), item.get("config")
    if not isinstance(name, str) or not name.strip() or "/" in name or name.strip() != name:
        raise ConfigError(f"{where}: stage {index}: 'name' must be a non-empty word (no '/')")
    if not isinstance(config, str) or not config:
        raise ConfigError(f"{where}: stage {name!r}: 'config' must be a path")
    overrides = item.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(s, str) for s in overrides):
        raise ConfigError(f"{where}: stage {name!r}: 'set' must be a list of key=value strings")
    path = (base / config).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: stage {name!r}: config {path} not found")
    return RecipeStage(name, path, tuple(overrides))


@dataclass
class StagePlan:
    """A stage resolved against an output directory: its config, run directory and state.

    Attributes:
        stage: the recipe's stage.
        config: the TrainConfig it trains with (file ← stage ``set`` ← caller's ← init_from).
        run_dir: ``<out>/<k>-<name>``.
        status: ``done`` (final model and results written), ``resume`` (checkpoints exist) or
            ``run``.
        resume_step: the newest checkpoint's step when ``status == "resume"``.
        assignments: every ``--set`` applied to the config file, in order.
    """

    stage: RecipeStage
    config: TrainConfig
    run_dir: Path
    status: StageStatus
    resume_step: int | None = None
    assignments: list[str] = field(default_factory=list)

    @property
    def final_dir(self) -> Path:
        return self.run_dir / "final"

    def command(self) -> str:
        """The equivalent single-stage command line."""
        parts = ["neurogshn pretrain", f"--config {_shown(self.stage.config)}"]
        parts += [f"--set '{a}'" for a in self.assignments]
        parts.append(f"--out {self.run_dir}")
        if self.status == "resume":
            parts.append("--resume")
        return " ".join(parts)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stage_dir(out: Path, index: int, stage: RecipeStage) -> Path:
    """The run directory of the ``index``-th (1-based) stage."""
    return out / f"{index}-{stage.name}"


def plan_recipe(recipe: Recipe, out: str | Path, overrides: Sequence[str] = ()) -> list[StagePlan]:
    """Resolve every stage's configuration and read its state from ``out``.

    Raises:
        ConfigError: a stage's config or assignments are invalid, a finished stage was
            trained with another configuration than the recipe now gives it, or a stage was
            trained while one before it is not finished (its start was another model).
    """
    out = Path(out)
    plans: list[StagePlan] = []
    for index, stage in enumerate(recipe.stages, start=1):
        run_dir = stage_dir(out, index, stage)
        assignments = [*stage.overrides, *overrides]
        if plans:
            assignments.append(f"model.init_from={json.dumps(str(plans[-1].final_dir))}")
        try:
            cfg = TrainConfig.from_json(stage.config).with_overrides(assignments)
        except ConfigError as exc:
            raise ConfigError(f"recipe {recipe.name!r}, stage {stage.name!r}: {exc}") from None
        status, step = _stage_state(run_dir, cfg, stage.name)
        unfinished = [p.stage.name for p in plans if p.status != "done"]
        if status != "run" and unfinished:
            raise ConfigError(
                f"stage {stage.name!r} in {run_dir} has been trained, but stage(s) {unfinished} "
                "before it are not finished: it did not start from what this recipe would "
                "give it; remove its directory, or give a new --out"
            )
        plans.append(StagePlan(stage, cfg, run_dir, status, step, assignments))
    return plans


def _stage_state(run_dir: Path, cfg: TrainConfig, name: str) -> tuple[StageStatus, int | None]:
    results = _read_json(run_dir / RESULTS_FILE)
    if (
        isinstance(results, dict)
        and results.get("final_dir")
        and (run_dir / "final" / "config.json").is_file()
    ):
        saved = _read_json(run_dir / TRAIN_CONFIG_FILE)
        if isinstance(saved, dict):
            differ = cfg.diff(
                TrainConfig.from_dict(saved, source=str(run_dir / TRAIN_CONFIG_FILE)),
                ignore=RESUME_MAY_DIFFER,
            )
            if differ:
                raise ConfigError(
                    f"stage {name!r} in {run_dir} is finished but was trained with another "
                    f"configuration ({', '.join(differ)} differ from the recipe's); give a new "
                    "--out, or remove that directory (and the stages after it) to train it again"
                )
        return "done", None
    latest = CheckpointManager(run_dir / "checkpoints").latest()
    if latest is not None:
        trainer = _read_json(latest / TRAINER_FILE)
        step = trainer.get("step") if isinstance(trainer, dict) else None
        return "resume", int(step) if isinstance(step, int) else None
    return "run", None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def format_plan(plans: Sequence[StagePlan]) -> str:
    """One block per stage: state, run directory, and the equivalent command."""
    lines = []
    for k, plan in enumerate(plans, start=1):
        state = {
            "done": "done",
            "resume": f"resume from step {plan.resume_step}"
            if plan.resume_step is not None
            else "resume",
            "run": "to run",
        }[plan.status]
        lines.append(f"[{k}/{len(plans)}] {plan.stage.name}: {state} — {plan.run_dir}")
        lines.append(f"    {plan.command()}")
    return "\n".join(lines)


@dataclass
class RecipeOutcome:
    """What :func:`run_recipe` did: the plans (states as found), the stages it trained, the
    final model directory and the evaluation figures (``None`` when not evaluated)."""

    plans: list[StagePlan]
    trained: list[str]
    final_dir: Path
    evaluation: dict[str, Any] | None


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    overrides: Sequence[str] = (),
    stop_after: str | None = None,
    evaluate: bool = True,
    log: Any = print,
) -> RecipeOutcome:
    """Train every stage that is not done (resuming a started one), then evaluate the last.

    Args:
        recipe: the recipe.
        out: output directory (one run directory per stage, and ``evaluation.json``).
        overrides: ``--set`` assignments for every stage (after the stage's own).
        stop_after: name of the last stage to train (no evaluation unless it is the last).
        evaluate: run the recipe's ``evaluate`` block when the chain is complete and
            ``<out>/evaluation.json`` does not exist yet.
        log: where progress lines go.
    """
    out = Path(out)
    plans = plan_recipe(recipe, out, overrides)
    last = recipe.stage_index(stop_after) if stop_after is not None else len(plans) - 1
    trained: list[str] = []
    for k, plan in enumerate(plans[: last + 1], start=1):
        if plan.status == "done":
            log(f"[{k}/{len(plans)}] {plan.stage.name}: done ({plan.final_dir})")
            continue
        verb = "resuming" if plan.status == "resume" else "training"
        log(f"[{k}/{len(plans)}] {plan.stage.name}: {verb} in {plan.run_dir}")
        log(f"    {plan.command()}")
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        run_pretraining(plan.config, plan.run_dir, resume=plan.status == "resume", log=log)
        trained.append(plan.stage.name)
    final_dir = plans[last].final_dir
    evaluation = None
    eval_path = out / EVALUATION_FILE
    if evaluate and recipe.evaluate is not None and last == len(plans) - 1:
        if eval_path.is_file() and not trained:
            evaluation = _read_json(eval_path)
            log(f"evaluation: {eval_path} (already written)")
        else:
            from neurogshn.tasks.evaluate import evaluate_checkpoint
            from neurogshn.tasks.metrics import format_metrics_table

            opts = dict(recipe.evaluate)
            task, split = opts.pop("task"), opts.pop("split")
            cfg = plans[last].config
            result = evaluate_checkpoint(
                task,
                final_dir,
                cfg.data.root,
                split,
                device=cfg.device,
                progress=cfg.log.progress,
                **opts,
            )
            log(format_metrics_table(result.metrics, title=f"{recipe.name}: {task} [{split}]"))
            evaluation = {"recipe": recipe.name, "checkpoint": str(final_dir), **result.to_dict()}
            write_json_atomic(eval_path, evaluation)
            log(f"wrote {eval_path}")
    return RecipeOutcome(plans, trained, final_dir, evaluation)
