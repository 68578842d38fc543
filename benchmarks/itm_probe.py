"""Frozen-encoder ITM probe: can a matching head learn relations and attribute binding from
what a pretrained GSHN's encoders already produce?

The checkpoint's image and text encoders are frozen; every training image's node embeddings
(``--nodes fused``: the fused ``V'`` the ITM head reads; ``raw``: the graph's input features
``x`` through a learned linear map) and centroids, and the token embeddings of every caption
and hard negative, are computed once. A *fresh* ITM head (the checkpoint's configuration:
layers, heads, node positions, self-attention) is then trained alone on (image, caption) = 1
against (image, one of its hard negatives) = 0, and scored every ``--eval-every`` steps on the
eval split's triples (true caption must outscore its relation- / attribute-swapped or
object-replaced twin; chance 50 %).

This separates two explanations of relational accuracy at chance after pretraining: (a) the
encoders' outputs do not carry what the relation needs, or (b) the head has not had enough
optimisation. Each step costs only the head, so thousands of steps are cheap (GPU: seconds).

    python benchmarks/itm_probe.py --checkpoint runs/pretrain_stl/final --data data/scenes \\
        --steps 3000 --device cuda --json probe.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from neurogshn.data.relational.captions import HARD_NEGATIVE_KINDS as KINDS  # noqa: E402


def pad(seqs: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-pad ``L_i×D`` tensors to ``B×L_max×D`` plus a ``B×L_max`` validity mask."""
    n = max(s.shape[0] for s in seqs)
    out = torch.zeros(len(seqs), n, seqs[0].shape[-1], device=device)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool, device=device)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out, mask


@torch.no_grad()
def encode_split(
    model: Any, root: Path, split: str, nodes: str, spec: Any, batch_size: int = 128
) -> dict[int, tuple[Tensor, Tensor]]:
    """``image_id → (node vectors n×F, centroids n×2)`` for every graph of ``split``."""
    from torch_geometric.data import Batch

    from neurogshn.graph.cache import load_graph_dataset

    graphs = load_graph_dataset(
        root, split, nodes=spec.nodes, edges=spec.edges, backbone=spec.backbone, progress=False
    )
    out: dict[int, tuple[Tensor, Tensor]] = {}
    for start in range(0, len(graphs), batch_size):
        chunk = [graphs[i] for i in range(start, min(start + batch_size, len(graphs)))]
        batch = Batch.from_data_list(chunk).to(model.device)
        image = model.encode_image(batch)
        vec, mask = image.dense_nodes(batch.x if nodes == "raw" else None)
        pos, _ = image.dense_nodes(image.node_pos)
        for j, data in enumerate(chunk):
            k = int(mask[j].sum())
            out[int(data.image_id)] = (vec[j, :k].clone(), pos[j, :k].clone())
    return out


@torch.no_grad()
def encode_texts(model: Any, texts: set[str], batch_size: int = 512) -> dict[str, Tensor]:
    """``text → token embeddings L×D`` (padding removed)."""
    out: dict[str, Tensor] = {}
    ordered = sorted(texts)
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        enc = model.encode_text(chunk)
        for j, t in enumerate(chunk):
            out[t] = enc.token_embeds[j, : int(enc.attention_mask[j].sum())].clone()
    return out


class ProbeHead(nn.Module):
    """A fresh ITM head (checkpoint's configuration) behind an optional node projection.

    Args:
        config: the checkpoint's ``GSHNConfig``.
        node_dim: size of the node vectors fed in.
    """

    def __init__(self, config: Any, node_dim: int) -> None:
        super().__init__()
        from neurogshn.model.itm import ITMHead

        d = config.embed_dim
        self.proj: nn.Module = nn.Identity() if node_dim == d else nn.Linear(node_dim, d)
        self.head = ITMHead(
            d,
            config.itm_heads,
            config.itm_layers,
            dropout=0.0,
            node_position=config.itm_node_position,
            self_attention=config.itm_self_attention,
            token_position=config.itm_token_position,
            max_tokens=config.text_max_length,
        )

    def forward(self, tok: Tensor, tmask: Tensor, nodes: Tensor, nmask: Tensor, pos: Tensor):
        return self.head(tok, tmask, self.proj(nodes), nmask, pos)

    def score(self, tok: Tensor, tmask: Tensor, nodes: Tensor, nmask: Tensor, pos: Tensor):
        logits = self(tok, tmask, nodes, nmask, pos)
        return logits[:, 1] - logits[:, 0]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="pretrained GSHN directory")
    ap.add_argument("--data", type=Path, required=True, help="generated scenes root")
    ap.add_argument("--nodes", choices=("fused", "raw"), default="fused")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64, help="images per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-triples", type=int, default=1500)
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--eval-split", default="test")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the curve here")
    args = ap.parse_args(argv)

    from neurogshn.data.tasks import load_hard_negatives
    from neurogshn.graph.config import GraphConfig
    from neurogshn.model.gshn import GSHN

    model = GSHN.from_pretrained(args.checkpoint, device=args.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dev = model.device
    spec = GraphConfig.from_checkpoint(args.checkpoint)
    t0 = time.perf_counter()
    items, images = {}, {}
    for split in (args.train_split, args.eval_split):
        images[split] = encode_split(model, args.data, split, args.nodes, spec)
        path = args.data / "annotations" / f"hard_negatives_{split}.json"
        items[split] = load_hard_negatives(path, image_ids=images[split]).items
    texts = {
        t
        for split in items
        for it in items[split]
        for t in (it.caption, *(it.kinds.get(k) for k in KINDS))
        if t
    }
    tokens = encode_texts(model, texts)
    encode_s = time.perf_counter() - t0

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    node_dim = next(iter(images[args.train_split].values()))[0].shape[-1]
    probe = ProbeHead(model.config, node_dim).to(dev)
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=0.01)
    triples = [
        (it.image_id, it.caption, it.kinds.get(k), k)
        for it in items[args.eval_split]
        for k in KINDS
        if it.kinds.get(k)
    ]
    rng.shuffle(triples)
    triples = triples[: args.eval_triples]

    def inputs(split: str, pairs: Sequence[tuple[int, str]]) -> tuple[Tensor, ...]:
        v, vm = pad([images[split][i][0] for i, _ in pairs], dev)
        p, _ = pad([images[split][i][1] for i, _ in pairs], dev)
        t, tm = pad([tokens[c] for _, c in pairs], dev)
        return t, tm, v, vm, p

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        probe.eval()
        pos = probe.score(*inputs(args.eval_split, [(i, c) for i, c, _, _ in triples]))
        neg = probe.score(*inputs(args.eval_split, [(i, n) for i, _, n, _ in triples]))
        probe.train()
        win = (pos > neg).float().cpu()
        kinds = [t[3] for t in triples]
        return {
            k.split("_")[0]: float(win[torch.tensor([kk == k for kk in kinds])].mean())
            for k in KINDS
            if k in kinds
        }

    curve: list[dict[str, Any]] = []
    train_items = items[args.train_split]
    t1 = time.perf_counter()
    for step in range(1, args.steps + 1):
        pairs, labels = [], []
        for it in rng.sample(train_items, min(args.batch_size, len(train_items))):
            pairs.append((it.image_id, it.caption))
            labels.append(1)
            negs = [it.kinds.get(k) for k in KINDS if it.kinds.get(k)]
            if negs:
                pairs.append((it.image_id, rng.choice(negs)))
                labels.append(0)
        logits = probe(*inputs(args.train_split, pairs))
        loss = nn.functional.cross_entropy(logits, torch.tensor(labels, device=dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            row = {"step": step, "loss": float(loss.detach()), "seconds": time.perf_counter() - t1}
            row.update(evaluate())
            curve.append(row)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            print(json.dumps(shown), flush=True)
    result = {
        "checkpoint": str(args.checkpoint),
        "nodes": args.nodes,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "encode_seconds": encode_s,
        "device": str(dev),
        "curve": curve,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
