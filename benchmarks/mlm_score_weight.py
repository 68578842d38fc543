"""Choose the weight of the masked-LM evidence in the match score on a validation split.

The match score of a pair is ``s = ITM logit difference + λ · mean PMI`` (the image-
conditioned pointwise mutual information of the caption's content words,
:meth:`neurogshn.model.gshn.GSHN.mlm_evidence`). This script scores every caption of a split's
hard-negatives file and each of its negatives with both parts once, then prints, for a grid
of ``λ``, the accuracy per hard-negative kind (the true caption must outscore its negative),
their mean, and the accuracy of each part alone. Run it on the validation split: that is where
``itm_mlm_score_weight`` is chosen, never on test.

    python benchmarks/mlm_score_weight.py --checkpoint runs/open/s0/<run>/final \\
        --data data/scenes --split val --json val_lambda.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@torch.no_grad()
def score_parts(
    model: Any, graphs: Any, pairs: list[tuple[int, str]], batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM logit difference and mean PMI of each (image id, text) pair."""
    from torch_geometric.data import Batch

    logits, pmis = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = Batch.from_data_list([graphs.get_by_image_id(i) for i, _ in chunk])
        texts = [t for _, t in chunk]
        image = model.encode_image(batch)
        text = model.encode_text(texts)
        logits.append(model._itm_logit_scores(image, text).float().cpu())
        pmis.append(model.mlm_evidence(image, texts)[:, 0].float().cpu())
    return torch.cat(logits), torch.cat(pmis)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--grid", type=float, nargs="+", default=list(DEFAULT_GRID))
    parser.add_argument("--max-items", type=int, default=None, help="first N captions")
    parser.add_argument(
        "--kinds", nargs="+", default=None, help="hard-negative kinds to score (default: all)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from neurogshn.data.tasks import load_hard_negatives, task_path
    from neurogshn.graph.config import GraphConfig, load_graphs
    from neurogshn.model.gshn import GSHN
    from neurogshn.utils.runtime import resolve_device

    device = resolve_device(args.device)
    model = GSHN.from_pretrained(args.checkpoint, device=device).eval()
    if not model.has_token_head:
        parser.error(f"{args.checkpoint} has no masked-token head (itm_mlm_weight=0)")
    spec = GraphConfig.from_checkpoint(args.checkpoint)
    graphs = load_graphs(args.data, args.split, spec, progress=False, device=device)
    items = load_hard_negatives(task_path(args.data, "hard_negatives", args.split)).items
    items = items[: args.max_items] if args.max_items else items
    pairs: list[tuple[int, str]] = []
    triples: list[tuple[str, int, int]] = []  # kind, positive row, negative row
    for item in items:
        pos = len(pairs)
        pairs.append((item.image_id, item.caption))
        for kind, negative in item.negatives().items():
            if args.kinds and kind not in args.kinds:
                continue
            triples.append((kind, pos, len(pairs)))
            pairs.append((item.image_id, negative))
    logit, pmi = score_parts(model, graphs, pairs)
    kinds = sorted({k for k, _, _ in triples})
    pos = torch.tensor([p for _, p, _ in triples])
    neg = torch.tensor([n for _, _, n in triples])
    kind_of = [k for k, _, _ in triples]

    def accuracy(score: torch.Tensor) -> dict[str, float]:
        right = (score[pos] > score[neg]).float()
        out = {}
        for kind in kinds:
            rows = torch.tensor([i for i, k in enumerate(kind_of) if k == kind])
            out[kind] = 100.0 * float(right[rows].mean())
        out["mean"] = sum(out[k] for k in kinds) / len(kinds)
        return out

    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "pairs": len(pairs),
        "pmi_alone": accuracy(pmi),
        "grid": {f"{lam:g}": accuracy(logit + lam * pmi) for lam in args.grid},
    }
    best = max(args.grid, key=lambda lam: result["grid"][f"{lam:g}"]["mean"])
    result["best"] = best
    header = f"{'λ':>8} " + " ".join(f"{k[:14]:>14}" for k in [*kinds, "mean"])
    print(header)
    for name, acc in [("PMI only", result["pmi_alone"]), *result["grid"].items()]:
        print(f"{name:>8} " + " ".join(f"{acc[k]:14.1f}" for k in [*kinds, "mean"]))
    print(f"best λ on {args.split}: {best:g}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
