"""``neurogshn recipe``: train a multi-stage pretraining recipe end to end, resumably.

::

    neurogshn recipe configs/recipes/gshn_10k.json              # train what is left, evaluate
    neurogshn recipe configs/recipes/gshn_10k.json --dry-run    # only show the stages' states
    neurogshn recipe configs/recipes/gshn_10k.json --set seed=1 --out runs/gshn_10k_seed1
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recipe",
        help="train a chain of pretraining stages (each from the last one's model), then evaluate",
        description=(
            "Train the stages of a recipe file in order, each starting from the previous "
            "stage's final model (model.init_from), in <out>/<k>-<stage>/, then run the "
            "recipe's evaluation into <out>/evaluation.json. Run it again after a kill: "
            "finished stages are kept (refused if the recipe changed under them), a started "
            "one resumes from its newest checkpoint. Format: docs/training.md, 'Recipes'."
        ),
    )
    p.add_argument("recipe", type=Path, help="recipe JSON (e.g. configs/recipes/gshn_10k.json)")
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default: runs/<recipe name>)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="TrainConfig override for every stage, after the stage's own (e.g. --set seed=1)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 … for every stage (default: the configs')")
    p.add_argument("--stop-after", metavar="STAGE", help="train up to this stage only")
    p.add_argument("--no-eval", action="store_true", help="skip the recipe's evaluation")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage's state (done / resume from step N / to run), run directory "
        "and equivalent `neurogshn pretrain` command, and train nothing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurogshn.jobs.recipe import Recipe, format_plan, plan_recipe, run_recipe

    recipe = Recipe.from_json(args.recipe)
    out = args.out if args.out is not None else Path("runs") / recipe.name
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.stop_after is not None:
        recipe.stage_index(args.stop_after)  # an unknown name fails before any work
    if args.dry_run:
        print(f"recipe {recipe.name} ({args.recipe}) → {out}")
        if recipe.description:
            print(recipe.description)
        print(format_plan(plan_recipe(recipe, out, overrides)))
        return 0
    outcome = run_recipe(
        recipe, out, overrides, stop_after=args.stop_after, evaluate=not args.no_eval
    )
    print(f"model: {outcome.final_dir}  (trained now: {', '.join(outcome.trained) or 'none'})")
    return 0
