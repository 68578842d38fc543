"""Task heads, task files and the fine-tuning loop on a stand-in backbone (tests/tasks)."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Data

from neurogshn.errors import DataError
from neurogshn.tasks.finetune import build_task_model, evaluate_task, finetune, task_metrics
from neurogshn.tasks.finetune_config import FinetuneConfig
from neurogshn.tasks.heads import TaskHeadConfig
from neurogshn.tasks.task_checkpoint import read_task_json
from neurogshn.tasks.task_data import TaskExample, load_task_examples

COLORS = ["red", "green", "blue", "gray"]


def _graphs(n: int) -> dict[int, Data]:
    """Image i: a global node + two objects; object 1's color is i % 4 (one-hot feature)."""
    out = {}
    for i in range(n):
        x = torch.zeros(3, 4)
        x[0] = 0.25
        x[1, i % 4] = 1.0
        x[2, (i + 1) % 4] = 1.0
        ei = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
        out[i] = Data(x=x, edge_index=ei, image_id=torch.tensor([i]))
    return out


def test_head_config_validation():
    with pytest.raises(ValueError, match="unknown task"):
        TaskHeadConfig(task="caption", labels=["a", "b"])
    with pytest.raises(ValueError, match="2 labels"):
        TaskHeadConfig(task="vqa", labels=["a"])
    cfg = TaskHeadConfig(task="nlvr2", labels=["False", "True"], embed_dim=16, heads=2)
    assert cfg.num_images == 2
    assert TaskHeadConfig.from_dict(cfg.to_dict()) == cfg


def test_vqa_head_learns_node_level_answer(tiny_backbone, tmp_path):
    graphs = _graphs(24)
    ex = [TaskExample(i, (i,), "what color is the first object", i % 4, "color") for i in range(24)]
    model = build_task_model(
        tiny_backbone, "vqa", COLORS, {"heads": 2, "hidden": 32, "dropout": 0.0}
    )
    before = evaluate_task(model, ex, graphs.__getitem__)
    cfg = FinetuneConfig(epochs=40, batch_size=8, lr=1e-2, backbone_lr=1e-2, seed=0)
    result = finetune(
        model,
        ex,
        graphs.__getitem__,
        cfg,
        out_dir=tmp_path / "ft",
        val_examples=ex,
        progress=False,
        log=lambda s: None,
    )
    after = evaluate_task(model, ex, graphs.__getitem__)
    assert after["vqa_acc"] == 1.0, (before, after)
    assert after["vqa_acc_color"] == 1.0
    hist = result["history"]
    assert len(hist) == 40 and hist[-1]["loss"] < hist[0]["loss"]
    meta = read_task_json(tmp_path / "ft")
    assert meta["task"] == "vqa" and meta["head"]["labels"] == COLORS
    assert (tmp_path / "ft" / "task_head.safetensors").is_file()
    assert (tmp_path / "ft" / "model.safetensors").is_file()
    assert len(meta["history"]) == 40


def test_nlvr2_head_two_images(tiny_backbone):
    graphs = _graphs(8)
    # "true" when the two images have the same object-1 colour
    ex = [
        TaskExample(k, (i, j), "both show the same color", int(i % 4 == j % 4))
        for k, (i, j) in enumerate([(0, 4), (1, 5), (0, 1), (2, 3), (3, 7), (2, 5)])
    ]
    model = build_task_model(tiny_backbone, "nlvr2", ["False", "True"], {"heads": 2})
    m = evaluate_task(model, ex, graphs.__getitem__)
    assert set(m) >= {"nlvr2_acc", "nlvr2_acc_True", "nlvr2_acc_False"}
    with pytest.raises(ValueError, match="2 image"):
        model.head(
            [
                tiny_backbone.encode_image(
                    __import__("torch_geometric").data.Batch.from_data_list([graphs[0]])
                )
            ],
            tiny_backbone.encode_text(["x"]),
        )


def test_task_metrics_per_group():
    ex = [TaskExample(0, (0,), "q", 0, "color"), TaskExample(1, (0,), "q", 1, "count")]
    m = task_metrics("vqa", ["red", "2"], ex, torch.tensor([0, 0]))
    assert m["vqa_acc"] == 0.5 and m["vqa_acc_color"] == 1.0 and m["vqa_acc_count"] == 0.0


def test_load_task_files(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "vqa_val.json").write_text(
        json.dumps(
            {
                "answers": ["red", "yes", "2"],
                "questions": [
                    {
                        "question_id": 1,
                        "image_id": 3,
                        "question": "color?",
                        "answer": "red",
                        "type": "color",
                    },
                    {
                        "question_id": 2,
                        "image_id": 3,
                        "question": "how many?",
                        "answer": "7",
                        "type": "count",
                    },
                    {"question_id": 3, "image_id": 3, "question": "missing answer"},
                ],
            }
        )
    )
    labels, ex, skipped = load_task_examples(tmp_path, "vqa", "val")
    assert labels == ["red", "yes", "2"] and len(ex) == 1 and len(skipped) == 2
    assert ex[0] == TaskExample(1, (3,), "color?", 0, "color", "red")
    with pytest.raises(DataError, match="not in the label vocabulary"):
        load_task_examples(tmp_path, "vqa", "val", strict=True)
    # with a head's vocabulary an unseen answer is kept and always counts as wrong
    _, ex, skipped = load_task_examples(tmp_path, "vqa", "val", labels=["red", "2"])
    assert [e.label for e in ex] == [0, -1] and len(skipped) == 1
    m = task_metrics("vqa", ["red", "2"], ex, torch.tensor([0, 0]))
    assert m["vqa_acc"] == 0.5 and m["vqa_acc_count"] == 0.0
    (ann / "ve_val.json").write_text(
        json.dumps(
            {
                "labels": ["entailment", "contradiction"],
                "items": [{"id": 5, "image_id": 1, "statement": "s", "label": "contradiction"}],
            }
        )
    )
    labels, ex, _ = load_task_examples(tmp_path, "ve", "val")
    assert ex[0].label == 1 and ex[0].image_ids == (1,)
    (ann / "nlvr2_val.json").write_text(
        json.dumps(
            {
                "items": [
                    {
                        "id": "a",
                        "left_image_id": 1,
                        "right_image_id": 2,
                        "statement": "s",
                        "label": True,
                    },
                    {
                        "id": "b",
                        "left_image_id": 1,
                        "right_image_id": 2,
                        "statement": "s",
                        "label": "yes",
                    },
                ]
            }
        )
    )
    labels, ex, skipped = load_task_examples(tmp_path, "nlvr2", "val")
    assert labels == ["False", "True"] and ex[0].label == 1 and ex[0].image_ids == (1, 2)
    assert len(skipped) == 1
    # NLVR2 reporting groups come from the item's optional "type", never from the wording:
    # items without one are reported together, in the overall accuracy only
    pair = {
        "left_image_id": 1,
        "right_image_id": 2,
        "statement": "in both images, there is a red circle.",
        "label": True,
    }
    items = [{**pair, "id": 0, "type": "both"}, {**pair, "id": 1}, {**pair, "id": 2, "type": 7}]
    (ann / "nlvr2_train.json").write_text(json.dumps({"items": items}))
    labels, ex, skipped = load_task_examples(tmp_path, "nlvr2", "train")
    assert [e.group for e in ex] == ["both", None] and "type" in skipped[0]
    m = task_metrics("nlvr2", labels, ex, torch.tensor([1, 0]))
    assert m["nlvr2_acc"] == 0.5 and m["nlvr2_acc_both"] == 1.0 and m["nlvr2_n_both"] == 1
    assert not any("None" in k for k in m)
    with pytest.raises(DataError, match="task file not found"):
        load_task_examples(tmp_path, "vqa", "test")
    (ann / "vqa_test.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_task_examples(tmp_path, "vqa", "test")


def _left_right_graphs(n: int, seed: int) -> tuple[dict[int, Data], list[int]]:
    """Image i: a global node + two objects of random colours at random x; label 1 when the
    first-coloured object (feature 0) is left of the other. Only node positions tell."""
    gen = torch.Generator().manual_seed(seed)
    graphs, labels = {}, []
    for i in range(n):
        x = torch.zeros(3, 4)
        x[0] = 0.25
        x[1, 0] = 1.0
        x[2, 1] = 1.0
        xs = torch.rand(2, generator=gen)
        pos = torch.tensor([[0.5, 0.5], [float(xs[0]), 0.5], [float(xs[1]), 0.5]])
        ei = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
        graphs[i] = Data(x=x, edge_index=ei, pos=pos, image_id=torch.tensor([i]))
        labels.append(int(xs[0] < xs[1]))
    return graphs, labels


@pytest.mark.parametrize("fusion", ["blip", "cross"])
def test_blip_head_reads_node_positions(tiny_backbone, fusion):
    """The 'blip' head sees node centroids and answers a left/right question on held-out
    images; the 'cross' head has no access to positions and stays near chance."""
    graphs, labels = _left_right_graphs(160, seed=0)
    ex = [TaskExample(i, (i,), "is red left of green", labels[i]) for i in range(160)]
    torch.manual_seed(0)
    model = build_task_model(
        tiny_backbone,
        "vqa",
        ["no", "yes"],
        {"heads": 2, "hidden": 32, "dropout": 0.0, "fusion": fusion, "layers": 2},
    )
    cfg = FinetuneConfig(epochs=30, batch_size=16, lr=3e-3, backbone_lr=0.0, seed=0)
    finetune(model, ex[:120], graphs.__getitem__, cfg, progress=False, log=lambda s: None)
    acc = evaluate_task(model, ex[120:], graphs.__getitem__)["vqa_acc"]
    if fusion == "blip":
        assert acc >= 0.85, acc
    else:
        assert acc <= 0.75, acc


def test_task_json_without_fusion_loads_the_earlier_head():
    cfg = TaskHeadConfig(task="vqa", labels=["a", "b"], embed_dim=16, heads=2)
    legacy = {k: v for k, v in cfg.to_dict().items() if k not in ("fusion", "max_tokens")}
    loaded = TaskHeadConfig.from_dict(legacy)
    assert loaded.fusion == "cross" and loaded.layers == 1
    blip = TaskHeadConfig(task="vqa", labels=["a", "b"], embed_dim=16, heads=2, fusion="blip")
    assert TaskHeadConfig.from_dict(blip.to_dict()) == blip
    with pytest.raises(ValueError, match="unknown fusion"):
        TaskHeadConfig(task="vqa", labels=["a", "b"], fusion="film")
