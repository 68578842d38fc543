"""Retrieval R@1 by the number of re-ranked candidates K and the ITC weight w.

``neurogshn evaluate --task retrieval`` re-ranks each query's K best ITC candidates by
ITM + w · τ⁻¹ · cos (K = 16, w = 0.5 by default). How many candidates pay depends on the
checkpoint (a weak ITM head ranks worse than the cosine beyond a few candidates, a strong one
better) and on the pool size. This script scores the ITM of each query's ``--max-k`` best
candidates once and prints the R@1 table (image→text / text→image) for every K ≤ max-k and
every w::

    python benchmarks/rerank_sweep.py --checkpoint run/final --data scenes --split val \
        --max-k 64 [--json OUT]

Choose K and w on a validation split, then evaluate the test split once with ``--rerank K``.
Cost: the ITM head scores about ``(images + captions) × max-k`` pairs.

``--pool-norms 1,2,3`` adds image→text R@1 with the transductive pool normalisation of
``neurogshn evaluate --pool-norm BETA`` for each K, w and β (no extra ITM scoring).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.graph.config import GraphConfig, load_graphs
from neurogshn.model.gshn import GSHN
from neurogshn.tasks.encode import encode_graphs, encode_texts
from neurogshn.tasks.metrics import retrieval_metrics
from neurogshn.tasks.rerank import (
    caption_match_counts,
    itc_logit_scale,
    itm_rerank,
    pool_normalize_i2t,
    refuse_candidates,
)
from neurogshn.tasks.retrieval import retrieval_pool

DEFAULT_KS = (4, 8, 16, 24, 32, 48, 64)
DEFAULT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def sweep(
    model: GSHN,
    graphs: object,
    coco: CocoPanopticDataset,
    ks: tuple[int, ...],
    weights: tuple[float, ...],
    batch_size: int = 64,
    pool_norms: tuple[float, ...] = (),
) -> dict[str, dict[str, float]]:
    """``{"K=16,w=0.5": {"i2t_R@1": …, "t2i_R@1": …}, …}`` for every K in ``ks`` and w, and
    ``{"K=16,w=0.5,pool_norm=2": {"i2t_R@1": …}}`` for every β in ``pool_norms``."""
    _, by_id, texts, owner = retrieval_pool(graphs, coco.captions)
    owner_t = torch.tensor(owner)
    model.eval()
    with torch.no_grad():
        sim = encode_graphs(model, by_id, batch_size) @ encode_texts(model, texts).T
        i2t_max, t2i_max = itm_rerank(model, by_id, texts, sim, max(ks), batch_size, 0.0)
    scale = itc_logit_scale(model)
    table: dict[str, dict[str, float]] = {}
    for k in ks:
        for w in weights:
            i2t = refuse_candidates(i2t_max, sim, k, w, scale, dim=1)
            t2i = refuse_candidates(t2i_max, sim, k, w, scale, dim=0)
            table[f"K={k},w={w:g}"] = {
                "i2t_R@1": retrieval_metrics(i2t, owner_t)["i2t_R@1"],
                "t2i_R@1": retrieval_metrics(t2i, owner_t)["t2i_R@1"],
            }
            counts = caption_match_counts(t2i, sim, w, scale)
            for beta in pool_norms:
                pooled = pool_normalize_i2t(i2t, counts, beta)
                table[f"K={k},w={w:g},pool_norm={beta:g}"] = {
                    "i2t_R@1": retrieval_metrics(pooled, owner_t)["i2t_R@1"]
                }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="pretrained checkpoint directory")
    parser.add_argument("--data", required=True, help="data set root (COCO panoptic layout)")
    parser.add_argument("--split", default="val", help="split (default: val)")
    parser.add_argument("--max-k", type=int, default=32, help="largest K scored (default 32)")
    parser.add_argument("--weights", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS))
    parser.add_argument(
        "--pool-norms",
        default="",
        help="comma-separated β of the transductive image→text pool normalisation (default: none)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args(argv)
    if args.max_k < 1:
        parser.error("--max-k must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = tuple(float(w) for w in args.weights.split(","))
    pool_norms = tuple(float(b) for b in args.pool_norms.split(",") if b.strip())
    if any(b < 0 for b in pool_norms):
        parser.error("--pool-norms must be >= 0")
    ks = (*(k for k in DEFAULT_KS if k < args.max_k), args.max_k)
    start = time.perf_counter()
    model = GSHN.from_pretrained(args.checkpoint)
    if getattr(model, "itm_head", None) is None:
        print(f"{args.checkpoint}: the model has no ITM head, nothing to re-rank", file=sys.stderr)
        return 2
    graphs = load_graphs(
        args.data, args.split, GraphConfig.from_checkpoint(args.checkpoint), progress=False
    )
    coco = CocoPanopticDataset(args.data, args.split)
    table = sweep(model, graphs, coco, ks, weights, args.batch_size, pool_norms)
    print("R@1 image→text / text→image, % (rows K, columns w)")
    print("K".rjust(4) + "".join(f"w={w:g}".rjust(14) for w in weights))
    for k in ks:
        cells = (table[f"K={k},w={w:g}"] for w in weights)
        row = "".join(f"{100 * c['i2t_R@1']:.1f}/{100 * c['t2i_R@1']:.1f}".rjust(14) for c in cells)
        print(f"{k:4d}" + row)
    for beta in pool_norms:
        print(f"image→text R@1 with pool normalisation β = {beta:g}, % (rows K, columns w)")
        print("K".rjust(4) + "".join(f"w={w:g}".rjust(9) for w in weights))
        for k in ks:
            cells = (table[f"K={k},w={w:g},pool_norm={beta:g}"]["i2t_R@1"] for w in weights)
            print(f"{k:4d}" + "".join(f"{100 * c:.1f}".rjust(9) for c in cells))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
