"""What retrieval R@1 the captions of a generated split allow, whatever the model.

Many captions of the relational-scenes benchmark are true of more than one image of a test
pool ("the red circle is left of the blue square" fits every image with a unique red circle
left of a unique blue square). Three references, all on the same split::

    python benchmarks/caption_ceiling.py --data DATA --split test --samples 2000 --json OUT

1. **Perfect reader, random order** (``*_oracle``, exact; also reported by
   ``neurogshn evaluate --task retrieval``): true pairs first, in random order.
2. **Perfect reader preferring specific captions** (``i2t_R@K_oracle_specific``, exact):
   among true captions, those true of fewer images first.
3. **Bayes decision under the caption generator** (Monte Carlo): the captions' content was
   *decided* by :func:`neurogshn.data.relational.captions.make_captions`, which picks
   relations, statement kinds and whether to name sizes at random, and then worded by a
   phrasing family drawn independently of the scene. The wording therefore carries no
   information about which image a caption came from, and the decision depends on the
   content alone: with :math:`P_j(c)` the probability that the generator states caption
   :math:`c`'s content (its logical form) for scene :math:`j` (estimated from ``--samples``
   draws per image, add-½ smoothed over true pairs), text→image picks
   :math:`\\arg\\max_j P_j(c)` and image→text ranks captions by the posterior
   :math:`P_j(c) / \\sum_{j'} P_{j'}(c)`. This is the best any scorer can do on average
   (a pairwise scorer reaches it with :math:`s(j, c) = \\log P_j(c) - \\log p(c)`, what an
   ideal contrastive model learns); the estimate is printed at a quarter, half and all of the
   samples so that its convergence can be read off.

The data set must declare the benchmark (``annotations/scenes.json``); its diagnostics
(:class:`neurogshn.data.relational.adapter.RelationalDiagnostics`) give the truth of every
caption on every image, from the captions' logical forms and the scene facts rebuilt from the
files on disk, so held-out wordings are judged like the training wording. (3) assumes the
split was written by this package's generator (the figures of another generator's captions
would need that generator's :math:`P_j(c)`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from neurogshn.data.coco import CocoPanopticDataset  # noqa: E402
from neurogshn.data.diagnostics import diagnostics_for  # noqa: E402
from neurogshn.data.relational.captions import make_captions  # noqa: E402
from neurogshn.data.relational.logic import SceneFacts  # noqa: E402
from neurogshn.errors import DataError  # noqa: E402
from neurogshn.tasks.metrics import retrieval_oracle  # noqa: E402

_FACTS: list[SceneFacts] = []
_FORMS: dict[str, list[int]] = {}


def _init(facts: list[SceneFacts], forms: dict[str, list[int]]) -> None:
    """Per-process state: the scenes, and ``{logical form: pool captions stating it}``."""
    global _FACTS, _FORMS
    _FACTS, _FORMS = facts, forms


def _sample_counts(job: tuple[int, int, int]) -> tuple[int, list[tuple[int, list[int]]]]:
    """How often the content of each pool caption is drawn for scene ``j``, cumulated per
    sample chunk (matched on the logical form: the wording is drawn independently of the
    scene, so it cancels in the Bayes decision)."""
    j, samples, seed = job
    chunks = 4
    per = samples // chunks
    counts: Counter[int] = Counter()
    rows: dict[int, list[int]] = {}
    for chunk in range(chunks):
        for s in range(chunk * per, (chunk + 1) * per):
            rng = np.random.default_rng([seed, j, s])
            for spec in make_captions(_FACTS[j], rng, 5):
                for c in _FORMS.get(spec.canonical(), ()):  # every pool caption stating it
                    counts[c] += 1
        for c, n in counts.items():
            rows.setdefault(c, [0] * chunks)[chunk] = n
    return j, list(rows.items())


def bayes_recall_at_1(
    counts: np.ndarray, samples: int, truth: np.ndarray, owner: np.ndarray
) -> dict[str, float]:
    """R@1 of the Bayes decisions from generator counts (``counts[c, j]`` of ``samples``
    draws; ``truth[c, j]``), ties split evenly. Shapes: ``C×I``, ``C×I``, ``C``."""
    p = np.where(truth, (counts + 0.5) / (samples + 1.0), 0.0)
    n_cap, n_img = p.shape
    cols = np.arange(n_cap)
    best = p.max(axis=1, keepdims=True)
    top = p == best
    t2i = top[cols, owner] / top.sum(axis=1)
    post = p / p.sum(axis=1, keepdims=True)
    i2t = []
    for j in range(n_img):
        col = post[:, j]
        top_c = np.flatnonzero(col == col.max())
        i2t.append(float(np.mean(owner[top_c] == j)))
    return {"i2t_R@1_bayes": float(np.mean(i2t)), "t2i_R@1_bayes": float(np.mean(t2i))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="generated data set root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=2000, help="generator draws per image")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generator draws")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args(argv)
    if args.samples < 4 or args.samples % 4:
        parser.error("--samples must be a positive multiple of 4")
    t0 = time.perf_counter()
    coco = CocoPanopticDataset(args.data, args.split, strict=True)
    diagnostics = diagnostics_for(args.data, args.split, dataset=coco)
    if diagnostics is None or not hasattr(diagnostics, "logical_form"):
        raise DataError(args.data, "does not declare the relational-scenes benchmark")
    ids = [i for i in sorted(coco.captions) if coco.captions[i]][: args.max_images]
    texts = [c for i in ids for c in coco.captions[i]]
    problem = diagnostics.problem(texts, ids)
    if problem is not None:
        raise DataError(args.data, problem)
    facts_by_id = diagnostics.facts(ids)
    facts = [facts_by_id[i] for i in ids]
    owner = np.array([row for row, i in enumerate(ids) for _ in coco.captions[i]])
    truth = diagnostics.truth_matrix(texts, ids)  # C×I
    oracle = retrieval_oracle(truth.T, owner)
    print(
        f"{args.split}: {len(ids)} images, {len(texts)} captions; "
        f"{100 * oracle['ambiguous_caption_frac']:.1f} % of the captions are true of more than "
        f"one image (mean {oracle['images_per_caption']:.2f})",
        flush=True,
    )
    index: dict[str, list[int]] = {}
    for c, t in enumerate(texts):
        index.setdefault(diagnostics.logical_form(t), []).append(c)
    counts = np.zeros((4, len(texts), len(ids)))
    jobs = [(j, args.samples, args.seed) for j in range(len(ids))]
    from tqdm.auto import tqdm

    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs, _init, (facts, index)) as pool:
            results: Any = list(
                tqdm(pool.imap_unordered(_sample_counts, jobs, 8), total=len(jobs), unit="img")
            )
    else:
        _init(facts, index)
        results = [_sample_counts(job) for job in tqdm(jobs, unit="img")]
    for j, rows in results:
        for c, per_chunk in rows:
            counts[:, c, j] = per_chunk
    out: dict[str, Any] = {
        "data": str(args.data),
        "split": args.split,
        "images": len(ids),
        "captions": len(texts),
        "samples": args.samples,
        **oracle,
    }
    for part in (1, 2, 4):
        n = args.samples * part // 4
        est = bayes_recall_at_1(counts[part - 1], n, truth, owner)
        out[f"bayes_at_{n}_samples"] = est
        print(
            f"Bayes decision, {n:>6} samples/image: i2t R@1 {100 * est['i2t_R@1_bayes']:.1f} %  "
            f"t2i R@1 {100 * est['t2i_R@1_bayes']:.1f} %"
        )
    out.update(out[f"bayes_at_{args.samples}_samples"])
    never = truth[np.arange(len(texts)), owner] & (counts[3][np.arange(len(texts)), owner] == 0)
    out["own_caption_never_sampled_frac"] = float(never.mean())
    out["seconds"] = time.perf_counter() - t0
    print(
        f"perfect reader, random order:     i2t R@1 {100 * oracle['i2t_R@1_oracle']:.1f} %  "
        f"t2i R@1 {100 * oracle['t2i_R@1_oracle']:.1f} %\n"
        f"perfect reader, specific first:   i2t R@1 "
        f"{100 * oracle['i2t_R@1_oracle_specific']:.1f} %\n"
        f"own caption never drawn by the generator in {args.samples} samples: "
        f"{100 * out['own_caption_never_sampled_frac']:.1f} % ({out['seconds']:.0f} s)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
