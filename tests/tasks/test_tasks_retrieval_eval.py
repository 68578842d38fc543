"""evaluate_retrieval on a stand-in model with known embeddings (tests/tasks)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from neurogshn.errors import DataError
from neurogshn.tasks.hard_negatives import hard_negative_triples
from neurogshn.tasks.retrieval import evaluate_retrieval, summarize_retrieval


class _LookupModel(nn.Module):
    """Image embedding = one-hot of the graph's image id; caption embedding from a table."""

    def __init__(self, table: dict[str, int], dim: int = 8) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.table = table
        self.dim = dim
        self.calls = 0

    def encode_image(self, batch):
        assert not self.training and not torch.is_grad_enabled()
        self.calls += 1
        ids = batch.image_id.view(-1)
        return SimpleNamespace(image_embeds=torch.eye(self.dim)[ids])

    def encode_text(self, texts):
        vecs = torch.stack([torch.eye(self.dim)[self.table[t] % self.dim] for t in texts])
        return SimpleNamespace(text_embeds=vecs)


def _graph(image_id: int) -> Data:
    return Data(
        x=torch.zeros(2, 3),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        image_id=torch.tensor([image_id]),
    )


class _Graphs:
    def __init__(self, ids):
        self.graphs = [_graph(i) for i in ids]
        self.image_ids = list(ids)

    def __len__(self):
        return len(self.graphs)

    def __getitem__(self, i):
        return self.graphs[i]

    def get_by_image_id(self, image_id):
        return self.graphs[self.image_ids.index(image_id)]


def test_evaluate_retrieval_known_embeddings(tmp_path):
    ids = [0, 1, 2, 3]
    captions = {i: [f"img{i} cap{j}" for j in range(5)] for i in ids}
    table = {c: i for i, cs in captions.items() for c in cs}
    # image 3's captions all point to image 0's direction: image 3 misses, its captions too
    for c in captions[3]:
        table[c] = 0
    table.update({"swap ok": 7, "swap bad": 1, "attr tie": 2})
    items = [
        {
            "image_id": 1,
            "caption_index": 0,
            "caption": "img1 cap0",
            "relation_swap": "swap ok",
            "attribute_swap": "swap bad",
            "object_replace": None,
        },
        {
            "image_id": 2,
            "caption_index": 0,
            "caption": "img2 cap0",
            "relation_swap": None,
            "attribute_swap": "attr tie",
            "object_replace": "swap ok",
        },
        {
            "image_id": 99,
            "caption_index": 0,
            "caption": "img1 cap0",
            "relation_swap": "swap ok",
            "attribute_swap": None,
            "object_replace": None,
        },  # not evaluated: ignored
    ]
    model = _LookupModel(table)
    model.train()
    coco = SimpleNamespace(captions=captions, root=tmp_path)
    m = evaluate_retrieval(model, _Graphs(ids), coco, hard_negatives=items, batch_size=3)
    assert model.training  # mode restored
    assert model.calls == 2  # 4 graphs in batches of 3
    assert m["num_images"] == 4 and m["num_captions"] == 20
    # image 0 ties with image 3's captions (pessimistic: a miss); image 3 misses -> 2/4
    assert m["i2t_R@1"] == pytest.approx(2 / 4)
    assert m["i2t_R@5"] == pytest.approx(2 / 4)  # image 0 at rank 5 is 6th
    assert m["i2t_R@10"] == pytest.approx(3 / 4)  # image 3 at rank 15
    # image 3's captions rank image 0 first, image 3 ties with images 1, 2 at 0 -> rank 3
    assert m["t2i_R@1"] == pytest.approx(15 / 20)
    assert m["t2i_R@5"] == pytest.approx(1.0)
    # relation: image 1 vs "swap ok" (dir 7) -> 1 > 0 correct
    assert m["relation_swap_acc"] == 1.0 and m["relation_swap_n"] == 1
    # attribute: image 1 vs "swap bad" (dir 1) -> tie: wrong; image 2 vs "attr tie" -> tie
    assert m["attribute_swap_acc"] == 0.0 and m["attribute_swap_n"] == 2
    assert m["object_replace_acc"] == 1.0
    assert m["num_hard_negative_triples"] == 4
    # blind control: scored against the next image, every pair ties at 0 -> all wrong
    assert m["relation_swap_acc_blind"] == 0.0 and m["hard_negative_acc_blind"] == 0.0
    assert m["relation_swap_acc_itc"] == m["relation_swap_acc"]

    # the same from a file path; without hard negatives no diagnostics at all
    path = tmp_path / "hn.json"
    path.write_text(json.dumps({"version": 1, "items": items}))
    m2 = evaluate_retrieval(model, _Graphs(ids), coco, hard_negatives=path)
    assert m2["relation_swap_acc"] == 1.0
    m3 = evaluate_retrieval(model, _Graphs(ids), coco)
    assert "relation_swap_acc" not in m3 and m3["i2t_R@1"] == m["i2t_R@1"]


def test_images_without_captions_are_left_out(tmp_path):
    captions = {0: ["a"], 1: [], 2: ["c"]}
    model = _LookupModel({"a": 0, "c": 2})
    m = evaluate_retrieval(model, _Graphs([0, 1, 2]), SimpleNamespace(captions=captions))
    assert m["num_images"] == 2 and m["images_without_captions"] == 1
    assert m["i2t_R@1"] == 1.0
    with pytest.raises(DataError, match="no image"):
        evaluate_retrieval(model, _Graphs([5]), SimpleNamespace(captions=captions, root=tmp_path))


def test_triples_expand_each_negative():
    t = hard_negative_triples(
        [
            {
                "image_id": 1,
                "caption_index": 0,
                "caption": "x",
                "relation_swap": "y",
                "attribute_swap": "z",
                "object_replace": None,
                "negation": "not x",  # any other field is a kind
            }
        ]
    )
    assert [(x.kind, x.negative) for x in t] == [
        ("relation_swap", "y"),
        ("attribute_swap", "z"),
        ("negation", "not x"),
    ]


class _FirstWordITM(nn.Module):
    """Match score = +1 when the caption starts with "yes", -1 otherwise (ignores the image)."""

    def forward(self, tokens, token_mask, nodes, node_mask):
        assert nodes.shape[0] == tokens.shape[0] and node_mask.dtype == torch.bool
        s = tokens[:, 0, 0]
        return torch.stack([torch.zeros_like(s), s], dim=-1)


def test_itm_scorer_for_hard_negatives(tiny_backbone):
    from neurogshn.tasks.retrieval import evaluate_retrieval

    class WithITM(type(tiny_backbone)):
        def encode_text(self, texts):
            enc = super().encode_text(texts)
            tok = enc.token_embeds.clone()
            tok[:, 0, 0] = torch.tensor([1.0 if t.startswith("yes") else -1.0 for t in texts])
            return SimpleNamespace(
                text_embeds=enc.text_embeds, token_embeds=tok, attention_mask=enc.attention_mask
            )

    model = WithITM()
    model.itm_head = _FirstWordITM()
    graphs = _Graphs([0, 1])
    for g in graphs.graphs:
        g.x = torch.rand(2, 4)
    captions = {0: ["yes a"], 1: ["no b"]}
    items = [
        {
            "image_id": 0,
            "caption": "yes a",
            "relation_swap": "no a",
            "attribute_swap": None,
            "object_replace": None,
        },
        {
            "image_id": 1,
            "caption": "no b",
            "relation_swap": "yes b",
            "attribute_swap": "no c",
            "object_replace": None,
        },
    ]
    coco = SimpleNamespace(captions=captions)
    m = evaluate_retrieval(model, graphs, coco, hard_negatives=items)
    # ITM: image 0 true "yes" (+1) vs "no" (-1): right; image 1 "no" vs "yes": wrong
    assert m["relation_swap_acc_itm"] == 0.5 and m["relation_swap_acc"] == 0.5
    assert m["attribute_swap_acc_itm"] == 0.0  # "no b" vs "no c": tie -> wrong
    assert "relation_swap_acc_itc" in m
    itc = evaluate_retrieval(model, graphs, coco, hard_negatives=items, hard_negative_scorer="itc")
    assert (
        itc["relation_swap_acc"] == itc["relation_swap_acc_itc"]
        and "relation_swap_acc_itm" not in itc
    )
    with pytest.raises(ValueError, match="no ITM head"):
        evaluate_retrieval(
            type(tiny_backbone)(), graphs, coco, hard_negatives=items, hard_negative_scorer="itm"
        )


def test_summary_line_names_present_diagnostics() -> None:
    recalls = {f"{d}_R@{k}": 0.5 for d in ("i2t", "t2i") for k in (1, 5, 10)}
    diagnostics = {
        "relation_swap_acc": 0.9,
        "relation_swap_n": 10.0,
        "attribute_swap_acc": math.nan,
        "attribute_swap_n": 0.0,
        "size_flip_acc": 0.75,
        "size_flip_n": 4.0,
        "negation_acc": 0.5,  # a kind of the user's own file
        "negation_n": 2.0,
        "relation_swap_acc_itm": 0.1,  # a scorer variant, not a kind
        "hard_negative_acc": 0.8,
    }
    line = summarize_retrieval(recalls | {"rsum": 300.0} | diagnostics)
    assert line.startswith("i2t R@1/5/10 50.0/50.0/50.0 | t2i R@1/5/10 50.0/50.0/50.0")
    assert line.endswith("relation_swap 90.0% | size_flip 75.0% | negation 50.0%")
    assert "attribute" not in line and "10.0%" not in line
