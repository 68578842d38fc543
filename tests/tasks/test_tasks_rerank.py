"""ITM re-ranking of retrieval candidates, and ImageEncoding.select (tests/tasks)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from neurogshn.tasks.rerank import itm_rerank, refuse_candidates
from neurogshn.tasks.retrieval import evaluate_retrieval

OFFSET = 1e4  # what itm_rerank adds to its candidates


class _Encoding:
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def select(self, rows: torch.Tensor) -> _Encoding:
        return _Encoding(self.ids[rows])


class _TableModel(nn.Module):
    """ITM score of (image id, caption) from a table; ITC logit scale 2."""

    def __init__(self, table: dict[tuple[int, str], float]) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.table = table
        self.itm_head = nn.Identity()
        self.pairs_scored = 0

    def itc_scale(self) -> torch.Tensor:
        return torch.tensor(2.0)

    def encode_image(self, batch):
        return _Encoding(batch.image_id.view(-1))

    def encode_text(self, texts):
        return SimpleNamespace(texts=list(texts))

    def itm_scores(self, image, text, texts=None):
        texts = text.texts if texts is None else texts  # re-ranking passes no raw texts
        self.pairs_scored += len(texts)
        return torch.tensor([self.table[(int(i), t)] for i, t in zip(image.ids, texts)])


def _graphs(n: int) -> list[Data]:
    return [
        Data(x=torch.zeros(1, 2), edge_index=torch.zeros(2, 0, dtype=torch.long), image_id=i)
        for i in range(n)
    ]


def test_itm_rerank_by_hand():
    texts = ["c0", "c1", "c2", "c3"]
    sim = torch.tensor([[0.9, 0.1, 0.8, 0.0], [0.2, 0.3, 0.7, 0.6]])
    itm = {(0, "c0"): -1.0, (0, "c1"): 5.0, (0, "c2"): 0.0, (0, "c3"): 9.0}
    itm |= {(1, "c0"): 2.0, (1, "c1"): 0.0, (1, "c2"): 1.0, (1, "c3"): 3.0}
    model = _TableModel(itm)
    i2t, t2i = itm_rerank(model, _graphs(2), texts, sim, k=2, batch_size=1, itc_weight=0.5)
    # score = ITM + 0.5 · 2 · cos for each query's 2 best ITC candidates; others keep ITC
    expected_i2t = torch.tensor(
        [[OFFSET - 0.1, 0.1, OFFSET + 0.8, 0.0], [0.2, 0.3, OFFSET + 1.7, OFFSET + 3.6]]
    )
    expected_t2i = torch.tensor(
        [
            [OFFSET - 0.1, OFFSET + 5.1, OFFSET + 0.8, OFFSET + 9.0],
            [OFFSET + 2.2, OFFSET + 0.3, OFFSET + 1.7, OFFSET + 3.6],
        ]
    )
    torch.testing.assert_close(i2t, expected_i2t)
    torch.testing.assert_close(t2i, expected_t2i)
    # each distinct pair scored once: the union of 4 (i2t) and 8 (t2i) pairs is all 8
    assert model.pairs_scored == 8
    # image 0's best caption by ITC (c0) drops below c2 once re-ranked
    assert int(i2t[0].argmax()) == 2 and int(sim[0].argmax()) == 0


def test_refuse_candidates_equals_a_direct_rerank():
    """Scoring the 4 best candidates once with w = 0 and re-fusing for (k, w) gives exactly
    what itm_rerank computes for (k, w); a k above the scored candidates is refused."""
    gen = torch.Generator().manual_seed(0)
    texts = [f"c{j}" for j in range(6)]
    sim = torch.rand(5, 6, generator=gen) * 2 - 1
    itm = {(i, t): float(torch.randn(1, generator=gen)) for i in range(5) for t in texts}
    model = _TableModel(itm)
    i2t4, t2i4 = itm_rerank(model, _graphs(5), texts, sim, k=4, batch_size=2, itc_weight=0.0)
    for k in (1, 2, 4):
        for w in (0.0, 0.5, 2.0):
            i2t, t2i = itm_rerank(model, _graphs(5), texts, sim, k=k, batch_size=2, itc_weight=w)
            torch.testing.assert_close(refuse_candidates(i2t4, sim, k, w, 2.0, dim=1), i2t)
            torch.testing.assert_close(refuse_candidates(t2i4, sim, k, w, 2.0, dim=0), t2i)
    with pytest.raises(ValueError, match="k=5 exceeds"):
        refuse_candidates(i2t4, sim, 5, 0.5, 2.0, dim=1)


def test_rerank_changes_no_recall_above_k(tiny_model, make_batch):
    model = tiny_model.eval()
    batch = make_batch(sizes=(3, 4, 2, 5, 3, 4), seed=3)
    graphs = batch.to_data_list()
    for i, g in enumerate(graphs):
        g.image_id = i
    words = ["red circle", "blue square", "green cross", "small diamond", "large", "gray"]
    captions = {
        i: [f"a {w} left of the {words[(i + 1) % 6]}", f"the {w}"] for i, w in enumerate(words)
    }
    coco = SimpleNamespace(captions=captions)
    itc = evaluate_retrieval(model, graphs, coco)
    out = evaluate_retrieval(model, graphs, coco, rerank=3)
    assert out["rerank_k"] == 3.0
    for key in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5", "rsum"):
        assert out[f"{key}_itc"] == itc[key]
    # the 3 candidates are only re-ordered: recall at cut-offs >= 3 cannot change
    for key in ("i2t_R@5", "i2t_R@10", "t2i_R@5", "t2i_R@10"):
        assert out[key] == itc[key], key
    assert out["rsum"] == pytest.approx(
        100 * sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    )
    with pytest.raises(ValueError, match="ITM head"):
        delattr(model, "itm_head")
        evaluate_retrieval(model, graphs, coco, rerank=3)


def test_image_encoding_select_picks_and_repeats_images(tiny_model, make_batch):
    model = tiny_model.eval()
    with torch.no_grad():
        enc = model.encode_image(make_batch(sizes=(4, 1, 3)))
    rows = torch.tensor([2, 0, 2, 1])
    sub = enc.select(rows)
    assert sub.num_graphs == 4 and sub.spikes == []
    torch.testing.assert_close(sub.image_embeds, enc.image_embeds[rows])
    nodes, mask = enc.dense_nodes()
    sub_nodes, sub_mask = sub.dense_nodes()
    pos, _ = enc.dense_nodes(enc.node_pos)
    sub_pos, _ = sub.dense_nodes(sub.node_pos)
    for j, r in enumerate(rows.tolist()):
        n = int(mask[r].sum())
        assert int(sub_mask[j].sum()) == n
        torch.testing.assert_close(sub_nodes[j, :n], nodes[r, :n])
        torch.testing.assert_close(sub_pos[j, :n], pos[r, :n])


class _FusedModel(_TableModel):
    """2-D unit embeddings from tables, ITM from a table, ITC logit scale 4."""

    def __init__(self, table, images, texts) -> None:
        super().__init__(table)
        self.images, self.texts = images, texts

    def itc_scale(self) -> torch.Tensor:
        return torch.tensor(4.0)

    def encode_image(self, batch):
        enc = _Encoding(batch.image_id.view(-1))
        enc.image_embeds = self.images[enc.ids]
        return enc

    def encode_text(self, texts):
        embeds = torch.stack([self.texts[t] for t in texts])
        return SimpleNamespace(text_embeds=embeds, texts=list(texts))


def test_fused_hard_negative_scorer_by_hand():
    """fused = ITM + 0.5 · 4 · cos: it rescues an object replacement the ITM score gets wrong
    (0.0 vs 0.5) because the cosine knows the object is absent (1.0 vs 0.6)."""
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = {
        "a": torch.tensor([1.0, 0.0]),
        "b": torch.tensor([0.0, 1.0]),
        "x": torch.tensor([0.6, 0.8]),
        "y": torch.tensor([0.8, 0.6]),
    }
    table = {(i, t): 0.0 for i in (0, 1) for t in texts}
    table |= {(0, "x"): 0.5, (1, "b"): 2.0}
    model = _FusedModel(table, images, texts)
    items = [
        {"image_id": 0, "caption": "a", "object_replace": "x"},
        {"image_id": 1, "caption": "b", "relation_swap": "y"},
    ]
    coco = SimpleNamespace(captions={0: ["a"], 1: ["b"]})
    m = evaluate_retrieval(model, _graphs(2), coco, hard_negatives=items)
    assert m["object_replace_acc_itm"] == 0.0 and m["object_replace_acc_fused"] == 1.0
    assert m["relation_swap_acc_itm"] == 1.0 and m["relation_swap_acc_fused"] == 1.0
    assert m["object_replace_acc"] == m["object_replace_acc_fused"]  # auto = fused with an ITM head
    # blind (the other image): image 1 with "a" (0 + 2·0) vs "x" (0 + 2·0.8), image 0 with
    # "b" (0 + 2·0) vs "y" (0 + 2·0.8): both wrong
    assert m["object_replace_acc_blind"] == 0.0 and m["relation_swap_acc_blind"] == 0.0
    itm = evaluate_retrieval(
        model, _graphs(2), coco, hard_negatives=items, hard_negative_scorer="itm"
    )
    assert itm["object_replace_acc"] == 0.0 and "object_replace_acc_fused" not in itm
    with pytest.raises(ValueError, match="fused"):
        model.itm_head = None
        evaluate_retrieval(
            model, _graphs(2), coco, hard_negatives=items, hard_negative_scorer="fused"
        )


def test_itm_pair_scores_encode_each_image_once():
    from neurogshn.tasks.hard_negatives import HardNegativeTriple, itm_pair_scores

    class Counting(_TableModel):
        def __init__(self, table) -> None:
            super().__init__(table)
            self.encoded: list[int] = []

        def encode_image(self, batch):
            self.encoded.extend(batch.image_id.view(-1).tolist())
            return super().encode_image(batch)

    table = {(i, t): float(10 * i + k) for i in range(3) for k, t in enumerate("abcd")}
    model = Counting(table)
    triples = [
        HardNegativeTriple(2, "a", "b", "relation_swap"),
        HardNegativeTriple(0, "c", "d", "relation_swap"),
        HardNegativeTriple(2, "d", "a", "attribute_swap"),
        HardNegativeTriple(1, "b", "c", "object_replace"),
        HardNegativeTriple(0, "a", "a", "relation_swap"),
    ]
    rows = torch.tensor([t.image_id for t in triples])
    pos, neg = itm_pair_scores(model, _graphs(3), triples, rows, batch_size=2)
    assert sorted(model.encoded) == [0, 1, 2]  # one encoding per image, in 2 batches
    assert pos.tolist() == [table[(t.image_id, t.caption)] for t in triples]
    assert neg.tolist() == [table[(t.image_id, t.negative)] for t in triples]


def test_caption_match_counts_and_pool_normalisation_by_hand():
    """Caption c0 is true of both images (ITM 2 on each), c1 only of image 0 (1.5 vs −3) and
    written for it. Per query, image 0 picks the generic c0; lowering each caption by
    2 · log(0.5 + n̂) with n̂(c0) = 2σ(2) = 1.76, n̂(c1) = σ(1.5) + σ(−3) = 0.87 makes it pick
    c1: 2 − 2 log 2.26 = 0.37 against 1.5 − 2 log 1.36 = 0.88."""
    from neurogshn.tasks.rerank import caption_match_counts, pool_normalize_i2t

    sim = torch.tensor([[0.2, 0.1, -0.5], [0.3, -0.2, 0.4]])  # c2: never a candidate of image 0
    raw = torch.tensor([[2.0, 1.5, 0.0], [2.0, -3.0, 0.0]])
    i2t = refuse_candidates(raw + OFFSET, sim, 2, 0.5, 2.0, dim=1)
    t2i = refuse_candidates(raw + OFFSET, sim, 2, 0.5, 2.0, dim=0)
    counts = caption_match_counts(t2i, sim, 0.5, 2.0)
    sig = torch.sigmoid
    expected = torch.stack(
        [
            2 * sig(torch.tensor(2.0)),
            sig(torch.tensor(1.5)) + sig(torch.tensor(-3.0)),
            sig(torch.tensor(0.0)) * 2,
        ]
    )
    torch.testing.assert_close(counts, expected, atol=2e-3, rtol=0)
    assert int(i2t[0].argmax()) == 0  # the generic caption first
    pooled = pool_normalize_i2t(i2t, counts, 2.0)
    assert int(pooled[0].argmax()) == 1 and int(pooled[1].argmax()) == 0
    penalty = 2.0 * torch.log(0.5 + counts)
    torch.testing.assert_close(pooled[0, :2], i2t[0, :2] - penalty[:2])
    assert pooled[0, 2] == i2t[0, 2]  # not a candidate of image 0: its ITC score stays
    torch.testing.assert_close(pool_normalize_i2t(i2t, counts, 0.0), i2t)
    with pytest.raises(ValueError, match="weight >= 0"):
        pool_normalize_i2t(i2t, counts, -1.0)
    with pytest.raises(ValueError, match="2 counts"):
        pool_normalize_i2t(i2t, counts[:2], 1.0)


def test_evaluate_retrieval_pool_norm_keys():
    """The same two images as above, end to end: the per-query keys are unchanged and the
    transductive figures come apart as *_poolnorm."""
    s = 2**-0.5
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = {"c0": torch.tensor([s, s]), "c1": torch.tensor([s, s])}  # equal cosines
    table = {(0, "c0"): 2.0, (1, "c0"): 2.0, (0, "c1"): 1.5, (1, "c1"): -3.0}
    model = _FusedModel(table, images, texts)
    coco = SimpleNamespace(captions={0: ["c1"], 1: ["c0"]})
    plain = evaluate_retrieval(model, _graphs(2), coco, rerank=2)
    out = evaluate_retrieval(model, _graphs(2), coco, rerank=2, pool_norm=2.0)
    assert plain["i2t_R@1"] == 0.5 and out["i2t_R@1"] == 0.5
    assert out["i2t_R@1_poolnorm"] == 1.0 and out["pool_norm"] == 2.0
    assert {k: v for k, v in out.items() if "poolnorm" not in k and k != "pool_norm"} == plain
    assert not any(k.startswith("t2i_") and k.endswith("_poolnorm") for k in out)
    with pytest.raises(ValueError, match="needs rerank"):
        evaluate_retrieval(model, _graphs(2), coco, rerank=0, pool_norm=2.0)
