"""A tiny GSHN fits 16 graphs + captions to R@1 = 1.0 both ways, word order included."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch

from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
from neurogshn.model import GSHN

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "gray"]
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
RELATIONS = ["left of", "above"]


def _captions() -> tuple[list[str], list[str]]:
    """8 captions and their 8 relation-swapped twins: 16 distinct captions, and for every
    caption its twin is in the set too (a bag-of-words text model cannot tell them apart)."""
    base = []
    for k in range(8):
        a = f"{COLORS[k]} {SHAPES[k % 5]}"
        b = f"{COLORS[(k + 3) % 8]} {SHAPES[(k + 2) % 5]}"
        base.append((a, RELATIONS[k % 2], b))
    caps = [f"a {a} {r} a {b}" for a, r, b in base] + [f"a {b} {r} a {a}" for a, r, b in base]
    twins = caps[8:] + caps[:8]
    return caps, twins


def _retrieval_r1(model: GSHN, graphs: Batch, captions: list[str]) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        img = model.encode_image(graphs).image_embeds
        txt = model.encode_text(captions).text_embeds
    sim = img @ txt.T
    target = torch.arange(len(captions))
    i2t = (sim.argmax(1) == target).float().mean().item()
    t2i = (sim.argmax(0) == target).float().mean().item()
    return i2t, t2i


def test_fit_sixteen_scenes_to_r1(tiny_overrides, graph_factory):
    torch.manual_seed(0)
    captions, twins = _captions()
    assert len(set(captions)) == 16
    graphs = Batch.from_data_list([graph_factory(3 + i % 4, seed=100 + i) for i in range(16)])
    model = GSHN.from_config_name("gshn-tiny", **tiny_overrides)
    objective = PretrainingObjective()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    before = _retrieval_r1(model, graphs, captions)
    model.train()
    for _ in range(200):
        out = objective(model, PretrainBatch(graphs, captions, twins))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = _retrieval_r1(model, graphs, captions)
    assert before[0] < 0.5 and before[1] < 0.5
    assert after == (1.0, 1.0), (before, after, float(out["loss"]))
