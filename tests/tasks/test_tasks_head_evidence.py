"""Task heads that reuse pretraining: ITM evidence, a head copied from the ITM head, soft
counts (tests/tasks)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from neurogshn.errors import ConfigError
from neurogshn.tasks.finetune import build_task_model, evaluate_task, finetune
from neurogshn.tasks.finetune_config import FinetuneConfig
from neurogshn.tasks.heads import CrossModalFusion, TaskHeadConfig, count_bins
from neurogshn.tasks.task_checkpoint import load_task_checkpoint, save_task_checkpoint
from neurogshn.tasks.task_data import TaskExample

TEXTS = [
    "is the red circle left of the blue square?",
    "is there a green triangle?",
    "the large cross is below the small diamond.",
    "how many objects are there?",
]


def test_count_bins_by_hand():
    counts = torch.tensor([0.0, 3.0, 2.5, 14.0, -1.0, 0.25])
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.5, 0.5, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],  # above the last bin: saturates
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.75, 0.25, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(count_bins(counts, bins=4), expected)
    assert count_bins(torch.zeros(2, 3), bins=4).shape == (2, 3, 5)


def test_soft_counts_count_the_gated_nodes_and_skip_padding():
    fusion = CrossModalFusion(4, heads=1, count_heads=1)
    with torch.no_grad():  # key = 40·e0 whatever the question: gate = [x_n,0 > 0]
        fusion.count_query.weight.zero_()
        fusion.count_query.bias.copy_(torch.tensor([40.0, 0.0, 0.0, 0.0]))
    sign = torch.tensor([[1, 1, -1, 1, -1], [1, 1, 1, 1, 1]], dtype=torch.float)
    nodes = torch.zeros(2, 5, 4)
    nodes[..., 0] = sign
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    counts = fusion.soft_counts(torch.randn(2, 4), nodes, mask)
    torch.testing.assert_close(counts, torch.tensor([[3.0], [2.0]]), atol=1e-4, rtol=0)


def _count_graphs(n: int, seed: int) -> tuple[dict[int, Data], list[int]]:
    """Image i: k 'red' nodes (feature 0 on) and m others, k and m drawn independently, no
    global node: every mean over the nodes gives the red fraction k/(k+m), not k."""
    gen = torch.Generator().manual_seed(seed)
    graphs, labels = {}, []
    for i in range(n):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        m = int(torch.randint(1, 5, (1,), generator=gen))
        x = torch.zeros(k + m, 4)
        x[:k, 0] = 1.0
        x[k:, 1] = 1.0
        src = torch.arange(k + m - 1)
        ei = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        graphs[i] = Data(x=x, edge_index=ei, image_id=torch.tensor([i]))
        labels.append(k)
    return graphs, labels


def test_count_readout_learns_to_count_where_mean_pooling_cannot(tiny_backbone):
    graphs, labels = _count_graphs(240, seed=1)
    ex = [TaskExample(i, (i,), "how many red objects", labels[i]) for i in range(240)]
    accuracy = {}
    for counts in (0, 2):
        torch.manual_seed(0)
        model = build_task_model(
            tiny_backbone,
            "vqa",
            ["0", "1", "2", "3"],
            {"heads": 2, "hidden": 32, "dropout": 0.0, "count_heads": counts},
        )
        cfg = FinetuneConfig(epochs=25, batch_size=16, lr=3e-3, backbone_lr=0.0, seed=0)
        finetune(model, ex[:180], graphs.__getitem__, cfg, progress=False, log=lambda s: None)
        accuracy[counts] = evaluate_task(model, ex[180:], graphs.__getitem__)["vqa_acc"]
    assert accuracy[2] >= 0.9, accuracy
    assert accuracy[2] >= accuracy[0] + 0.15, accuracy


def test_match_evidence_by_part(tiny_model, make_batch):
    model = tiny_model.eval()
    model.fit_token_statistics(TEXTS * 2 + ["the sky is blue.", "a dog runs."])
    assert model.evidence_size == 1 + len(model.MLM_EVIDENCE) == 6
    with torch.no_grad():
        image = model.encode_image(make_batch())
        text = model.encode_text(TEXTS)
        ev = model.match_evidence(image, text, TEXTS)
        itm = model.itm_scores(image, text)
        pmi, owner = model.word_pmi(image, TEXTS)
    assert ev.shape == (4, model.evidence_size)
    torch.testing.assert_close(ev[:, 0], itm)  # the ITM logits alone
    for i in range(len(TEXTS)):
        mine = pmi[owner == i]
        assert ev[i, 5] == len(mine) > 0
        torch.testing.assert_close(ev[i, 1], mine.mean())
        torch.testing.assert_close(ev[i, 4], mine.max())


def test_evidence_of_texts_without_content_words_is_zero(tiny_model, make_batch):
    """Texts whose every word is in most training captions carry no PMI evidence."""
    model = tiny_model.eval()
    model.fit_token_statistics(["is there a cat?", "is there a dog?", "is there a fox?"])
    texts = ["is there a?"] * 4
    with torch.no_grad():
        image = model.encode_image(make_batch())
        ev = model.match_evidence(image, model.encode_text(texts), texts)
    assert torch.count_nonzero(ev[:, 1:]) == 0


def test_head_with_evidence_and_itm_copy_builds_runs_and_round_trips(
    tiny_model, make_batch, tmp_path
):
    model = build_task_model(
        tiny_model, "vqa", ["no", "yes"], {"init": "itm", "evidence": True, "count_heads": 2}
    ).eval()
    cfg = model.config
    itm = tiny_model.itm_head
    assert cfg.fusion == "blip" and cfg.init == "itm"
    assert cfg.layers == len(itm.layers) and cfg.evidence_dim == tiny_model.evidence_size
    theirs = itm.state_dict()
    for name, value in model.head.fusion.encoder.state_dict().items():
        torch.testing.assert_close(value, theirs[name])
    torch.testing.assert_close(model.head.fusion.norm.weight, itm.norm.weight)
    batch = make_batch()
    with torch.no_grad():
        logits = model([batch], TEXTS)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    save_task_checkpoint(model, tmp_path / "ft")
    loaded, meta = load_task_checkpoint(tmp_path / "ft", device="cpu")
    assert meta["head"]["evidence_dim"] == cfg.evidence_dim
    with torch.no_grad():
        torch.testing.assert_close(loaded([batch], TEXTS), logits)


def test_evidence_and_itm_copy_errors(tiny_model, tiny_overrides, make_batch):
    from neurogshn.model import GSHN

    no_itm = GSHN.from_config_name("gshn-tiny", **tiny_overrides, itm_weight=0.0)
    assert no_itm.evidence_size == 0
    with pytest.raises(ConfigError, match="ITM head"):
        build_task_model(no_itm, "vqa", ["no", "yes"], {"evidence": True})
    with pytest.raises(ConfigError, match="ITM head"):
        build_task_model(no_itm, "vqa", ["no", "yes"], {"init": "itm"})
    with pytest.raises(ConfigError, match="differ"):
        build_task_model(tiny_model, "vqa", ["no", "yes"], {"init": "itm", "layers": 7})
    with pytest.raises(ValueError, match="'blip'"):
        TaskHeadConfig(task="vqa", labels=["a", "b"], fusion="cross", init="itm")
    with pytest.raises(ValueError, match="unknown head init"):
        TaskHeadConfig(task="vqa", labels=["a", "b"], init="imagenet")
    model = build_task_model(tiny_model, "vqa", ["no", "yes"], {"evidence": True})
    with torch.no_grad():
        image = tiny_model.encode_image(make_batch())
        text = tiny_model.encode_text(TEXTS)
        with pytest.raises(ValueError, match="evidence"):
            model.head([image], text)
        with pytest.raises(ValueError, match="expects"):
            model.head([image], text, [torch.zeros(4, 3)])
