"""``neurogshn fit-prior``: give a trained model text-only priors of its relation and concept
classifiers, so that its match scores read them as pointwise mutual information."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit-prior",
        help="fit the text-only priors of a checkpoint's relation/concept classifiers",
        description=(
            "Load CHECKPOINT with itm_text_prior=true, fit the priors q(phrase | caption with "
            "the phrase masked) on the captions of a split (the text encoder frozen; nothing "
            "else changes) and save the model to OUT. Its ITM scores then count each stated "
            "relation or concept as log p(phrase | image, caption) - log q(phrase | caption) "
            "(docs/model.md, 'Scoring against the text prior')."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="model directory (config.json + weights)")
    p.add_argument("--data", required=True, help="data set root with the captions to fit on")
    p.add_argument("--split", default="train", help="split whose captions are used [train]")
    p.add_argument("--out", required=True, help="directory to write the model with its priors")
    p.add_argument("--epochs", type=int, default=20, help="passes over the masked phrases [20]")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate [0.001]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the fit report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.errors import ConfigError
    from neurogshn.model.gshn import GSHN
    from neurogshn.training.text_prior import fit_text_prior
    from neurogshn.utils.io import write_json_atomic
    from neurogshn.utils.runtime import resolve_device

    if Path(args.out).resolve() == Path(args.checkpoint).resolve():
        raise ConfigError(f"--out {args.out} is the checkpoint itself; write the model elsewhere")
    model = GSHN.from_pretrained(
        args.checkpoint, device=resolve_device(args.device), overrides={"itm_text_prior": True}
    )
    captions = [
        c for caps in CocoPanopticDataset(args.data, args.split).captions.values() for c in caps
    ]
    fits = fit_text_prior(model, captions, epochs=args.epochs, lr=args.lr, seed=args.seed)
    model.save_pretrained(args.out)
    print(f"{'vocabulary':<10} {'phrases':>8} {'CE (nats)':>10} {'H(freq)':>8} {'acc':>6}")
    for f in fits:
        print(
            f"{f.vocabulary:<10} {f.phrases:>8d} {f.cross_entropy:>10.3f} "
            f"{f.frequency_entropy:>8.3f} {100 * f.accuracy:>5.1f}%"
        )
    print(f"model with text priors written to {args.out}")
    if args.json:
        report = {
            "checkpoint": str(args.checkpoint),
            "data": str(args.data),
            "split": args.split,
            "captions": len(captions),
            "fits": [dataclasses.asdict(f) for f in fits],
        }
        write_json_atomic(args.json, report)
        print(json.dumps(report["fits"]))
    return 0
