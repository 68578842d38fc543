"""Can the ITM cross-encoder learn to compare two referents' positions? A synthetic probe.

Each example is a scene of ``N`` nodes (random type vectors plus noise, centroids uniform in
the unit square) and a token sequence ``[start] filler* A [MASK] filler* B [end]`` whose ``A``
and ``B`` tokens are noisy copies of the first two nodes' type vectors, so which node a token
names is learnable (and supervised, as the phrase-grounding term does in pretraining). A
linear classifier on the cross-encoder's state at ``[MASK]`` predicts a *target*:

- ``x``: whether node A lies in the left half (read from A's own token: one node),
- ``dx``: whether A lies left of B (two referents compared at a third token),
- ``relation``: the dominant-axis relation of A to B, four classes (left / right / above /
  below), what a masked relation word has to be predicted from;
- ``match``: ``[MASK]`` is replaced by one of two relation tokens (random vectors standing for
  "left of" and "right of") and the ITM head's own match logits decide whether the sequence
  is true of the scene (a relation word against the referents' order: the exclusive-or
  behind relation-swapped captions).

No word, template or benchmark data is involved: the token vectors are random. The probe
isolates the cross-encoder (:class:`~neurogshn.model.itm.ITMHead`, the default sizes) from
the rest of pretraining and prints the held-out accuracy per configuration, e.g.

    python benchmarks/relation_probe.py --target dx relation --geometry 0 4 --steps 300
    python benchmarks/relation_probe.py --target match --geometry 0 --relation 0 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from neurogshn.losses.grounding import GroundingTargets, referent_loss  # noqa: E402
from neurogshn.model.itm import ITMHead  # noqa: E402

TARGETS = ("x", "dx", "relation", "match")


class ProbeBatch(NamedTuple):
    tokens: Tensor  # B×L×D
    token_mask: Tensor  # B×L
    nodes: Tensor  # B×N×D
    node_pos: Tensor  # B×N×2
    mask_index: Tensor  # B
    grounded: Tensor  # B×L: node each token names, -1 for none
    targets: dict[str, Tensor]
    match_tokens: Tensor  # B×L×D: [MASK] replaced by a relation word (target "match")


class SyntheticScenes:
    """The probe's example generator (see module docstring)."""

    def __init__(
        self, dim: int, types: int = 30, nodes: int = 5, length: int = 12, seed: int = 0
    ) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.types = torch.randn(types, dim, generator=self.gen)
        self.words = self.types + 0.3 * torch.randn(types, dim, generator=self.gen)
        self.mask = torch.randn(dim, generator=self.gen)
        self.relation_words = torch.randn(2, dim, generator=self.gen)
        self.filler = torch.randn(6, dim, generator=self.gen)
        self.num_nodes, self.length, self.dim = nodes, length, dim

    def batch(self, size: int, noise: float = 0.5) -> ProbeBatch:
        g, n, length = self.gen, self.num_nodes, self.length
        kinds = torch.stack([torch.randperm(len(self.types), generator=g)[:n] for _ in range(size)])
        pos = torch.rand(size, n, 2, generator=g)
        nodes = self.types[kinds] + noise * torch.randn(size, n, self.dim, generator=g)
        tokens = torch.zeros(size, length, self.dim)
        token_mask = torch.zeros(size, length, dtype=torch.bool)
        grounded = torch.full((size, length), -1, dtype=torch.long)
        mask_index = torch.zeros(size, dtype=torch.long)
        for i in range(size):
            seq = [self.filler[0]]
            seq += [self.filler[1 + j] for j in range(int(torch.randint(0, 3, (1,), generator=g)))]
            grounded[i, len(seq)] = 0
            seq.append(self.words[kinds[i, 0]])
            mask_index[i] = len(seq)
            seq.append(self.mask)
            seq += [self.filler[4] for _ in range(int(torch.randint(0, 2, (1,), generator=g)))]
            grounded[i, len(seq)] = 1
            seq.append(self.words[kinds[i, 1]])
            seq.append(self.filler[5])
            tokens[i, : len(seq)] = torch.stack(seq)
            token_mask[i, : len(seq)] = True
        d = pos[:, 1] - pos[:, 0]
        horizontal = d[:, 0].abs() > d[:, 1].abs()
        relation = torch.where(
            horizontal, torch.where(d[:, 0] > 0, 0, 1), torch.where(d[:, 1] > 0, 2, 3)
        )
        targets = {
            "x": (pos[:, 0, 0] < 0.5).long(),
            "dx": (d[:, 0] > 0).long(),
            "relation": relation,
        }
        # match: a random relation word ("left of" = 0, "right of" = 1) at the [MASK] slot
        said = torch.randint(0, 2, (size,), generator=g)
        match_tokens = tokens.clone()
        match_tokens[torch.arange(size), mask_index] = self.relation_words[said]
        truth = (d[:, 0] > 0).long()  # 1: A left of B
        targets["match"] = (said == 1 - truth).long()
        return ProbeBatch(
            tokens, token_mask, nodes, pos, mask_index, grounded, targets, match_tokens
        )


def train_probe(
    target: str,
    geometry: int = 0,
    relative_positions: int = 0,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    dim: int = 256,
    heads: int = 4,
    layers: int = 2,
    grounding_weight: float = 1.0,
    seed: int = 0,
    eval_size: int = 2000,
    relation: float = 0.0,
) -> dict[str, float]:
    """Train a fresh ITM head and a linear read-out on ``target``; held-out accuracy."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    data = SyntheticScenes(dim, seed=seed)
    torch.manual_seed(seed)
    head = ITMHead(
        dim,
        heads,
        layers,
        0.1,
        node_position=True,
        self_attention=True,
        token_position=True,
        max_tokens=data.length,
        attention_sink=True,
        relative_positions=relative_positions,
        grounded_geometry=geometry,
        word_dim=dim,
        grounded_relation=relation,
    )
    classes = 4 if target == "relation" else 2
    readout = nn.Linear(dim, classes)
    params = list(head.parameters()) + list(readout.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def read(b: ProbeBatch) -> tuple[Tensor, Tensor]:
        nodes_mask = torch.ones(b.nodes.shape[:2], dtype=torch.bool)
        if target == "match":  # the ITM head's own logits
            tokens = b.match_tokens
            words = tokens if relation > 0 else None
            out = head(tokens, b.token_mask, b.nodes, nodes_mask, b.node_pos, True, words)
            return out[0], out[1]
        h, attentions = head.encode(b.tokens, b.token_mask, b.nodes, nodes_mask, b.node_pos)
        at = b.mask_index - 1 if target == "x" else b.mask_index
        return readout(h[torch.arange(len(at)), at]), attentions[0]

    start = time.perf_counter()
    for _ in range(steps):
        head.train()
        b = data.batch(batch_size)
        logits, attention = read(b)
        loss = F.cross_entropy(logits, b.targets[target])
        if grounding_weight > 0:
            sel = b.grounded >= 0
            hit = attention[sel].gather(1, b.grounded[sel][:, None]).clamp_min(1e-8)
            loss = loss - grounding_weight * hit.log().mean()
            if head.relation is not None:
                rows, tokens = sel.nonzero(as_tuple=True)
                group = torch.arange(len(rows))
                marks = GroundingTargets(rows, tokens, b.grounded[sel], group, len(rows))
                gate = head.relation.referent_logits(b.match_tokens)
                loss = loss + grounding_weight * referent_loss(gate, marks, b.token_mask)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    head.eval()
    with torch.no_grad():
        b = data.batch(eval_size)
        logits, _ = read(b)
        accuracy = (logits.argmax(-1) == b.targets[target]).float().mean().item()
        majority = torch.bincount(b.targets[target]).max().item() / eval_size
    return {"accuracy": accuracy, "majority": majority, "train_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument(
        "--geometry",
        type=int,
        nargs="+",
        default=[0, 4],
        help="itm_grounded_geometry values (0: off) (default: 0 4)",
    )
    parser.add_argument(
        "--relative-positions",
        type=int,
        nargs="+",
        default=[0],
        help="itm_relative_positions values (default: 0)",
    )
    parser.add_argument(
        "--relation",
        type=float,
        nargs="+",
        default=[0.0],
        help="itm_grounded_relation windows (0: off) (default: 0)",
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="(default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(
        f"{'target':>9} {'geometry':>8} {'relpos':>6} {'relation':>8} {'seed':>4} {'accuracy':>8} "
        f"{'majority':>8} {'seconds':>7}"
    )
    grid = itertools.product(
        args.target, args.geometry, args.relative_positions, args.relation, args.seeds
    )
    for target, geometry, relpos, relation, seed in grid:
        r = train_probe(target, geometry, relpos, steps=args.steps, seed=seed, relation=relation)
        rows.append(
            {
                "target": target,
                "geometry": geometry,
                "relative_positions": relpos,
                "relation": relation,
                "seed": seed,
                "steps": args.steps,
                **r,
            }
        )
        print(
            f"{target:>9} {geometry:>8} {relpos:>6} {relation:>8} {seed:>4} "
            f"{100 * r['accuracy']:>7.1f}% "
            f"{100 * r['majority']:>7.1f}% {r['train_seconds']:>7.0f}",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
