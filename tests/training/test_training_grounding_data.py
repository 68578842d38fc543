"""Pretraining batches carry phrase groundings: segment ids → node indices (phrase_nodes) and
alignment with the drawn caption (PretrainingData.batch)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch_geometric.data import Data

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.grounding import PhraseGrounding, caption_groundings
from neurogshn.losses.objective import PretrainBatch
from neurogshn.training.data import PretrainingData, PretrainItemSource, phrase_nodes


class Graphs(list):
    @property
    def image_ids(self) -> list[int]:
        return [int(g.image_id) for g in self]


class Batch3(NamedTuple):
    graphs: object
    captions: list
    hard_negatives: list


def graph(segment_ids: list[int] | None, image_id: int = 0) -> Data:
    n = 1 + (0 if segment_ids is None else len(segment_ids))
    data = Data(x=torch.zeros(n, 3), image_id=image_id, num_nodes=n)
    if segment_ids is not None:
        data.segment_id = torch.tensor([-1, *segment_ids], dtype=torch.long)
    return data


def test_phrase_nodes_maps_segment_ids_through_the_graph():
    g = graph([10, 20, 30])
    phrases = [
        PhraseGrounding(0, 5, (20,)),
        PhraseGrounding(6, 9, (30, 10)),
        PhraseGrounding(10, 12, (99,)),  # a segment without a node: no target
        PhraseGrounding(13, 20, (99, 20)),  # partly present: keep the present one
    ]
    assert phrase_nodes(phrases, g) == ((0, 5, (2,)), (6, 9, (3, 1)), (13, 20, (2,)))
    assert phrase_nodes([], g) == ()


def test_phrase_nodes_without_segments_gives_nothing():
    phrases = [PhraseGrounding(0, 5, (20,))]
    assert phrase_nodes(phrases, graph(None)) == ()  # no segment_id attribute
    assert not hasattr(graph(None), "segment_id")
    assert phrase_nodes(phrases, graph([-1, -1])) == ()  # patch nodes: -1 everywhere
    # the global node's -1 never matches a phrase
    assert phrase_nodes([PhraseGrounding(0, 5, (-1,))], graph([20])) == ()


N_IMAGES, N_CAPTIONS = 12, 5


def n_nodes(i: int) -> int:
    return 2 + i % 4


def make_source(with_groundings: bool = True) -> PretrainItemSource:
    graphs = Graphs(
        graph([1000 * i + k for k in range(1, n_nodes(i))], 100 + i) for i in range(N_IMAGES)
    )
    captions = {
        100 + i: [f"image {i} caption {j}" for j in range(N_CAPTIONS)] for i in range(N_IMAGES)
    }
    negatives = {(100 + i, 0): {"relation_swap": f"swapped {i}"} for i in range(0, N_IMAGES, 2)}
    groundings = {}
    if with_groundings:
        for i in range(N_IMAGES):
            for j in range(N_CAPTIONS):
                if (i + j) % 3:
                    # the span and the segment depend on the caption index j
                    seg = 1000 * i + 1 + j % (n_nodes(i) - 1)
                    groundings[(100 + i, j)] = (PhraseGrounding(0, 5 + j, (seg, 77)),)
    return PretrainItemSource(graphs, captions, negatives, groundings)


def expected_grounding(image_id: int, caption: str) -> tuple:
    i, j = image_id - 100, int(caption.rsplit(" ", 1)[1])
    if not (i + j) % 3:
        return ()
    return ((0, 5 + j, (1 + j % (n_nodes(i) - 1),)),)


def test_batch_groundings_follow_the_drawn_caption():
    data = PretrainingData(make_source(), 4, seed=5)
    seen = set()
    for epoch in range(3):
        for k in range(data.steps_per_epoch):
            b = data.batch(epoch, k)
            assert isinstance(b, PretrainBatch)
            ids = [int(i) for i in b.graphs.image_id]
            assert len(b.groundings) == len(ids) == len(b.captions)
            for iid, cap, found in zip(ids, b.captions, b.groundings, strict=True):
                assert found == expected_grounding(iid, cap), (iid, cap)
                seen.add(bool(found))
                # the node indices are valid for the graph inside the batch
                for _, _, nodes in found:
                    assert all(0 < n < n_nodes(iid - 100) for n in nodes)
    assert seen == {True, False}  # both grounded and ungrounded captions were drawn


def test_groundings_do_not_change_the_draws():
    with_g = PretrainingData(make_source(True), 4, seed=2)
    without = PretrainingData(make_source(False), 4, seed=2)
    for k in range(with_g.steps_per_epoch):
        a, b = with_g.batch(1, k), without.batch(1, k)
        assert a.captions == b.captions and a.hard_negatives == b.hard_negatives
        assert torch.equal(a.graphs.image_id, b.graphs.image_id)
        assert b.groundings is None  # a source without groundings: no grounding term
        assert a.groundings is not None


def test_three_field_batch_types_still_work_without_groundings():
    data = PretrainingData(make_source(False), 3, seed=0, batch_type=Batch3)
    b = data.batch(0, 0)
    assert isinstance(b, Batch3) and len(b.captions) == 3


def test_scenes_groundings_point_at_nodes_of_the_named_segments(scenes_root):
    """On the generated benchmark, with graphs whose nodes are the panoptic segments, every
    phrase of a batch points at nodes of its category."""
    ds = CocoPanopticDataset(scenes_root, "train")
    labels = {iid: ds.segment_labels(iid) for iid in ds.image_ids}
    graphs = Graphs(
        graph([s.id for s in reversed(labels[iid])], iid) for iid in ds.image_ids
    )  # reversed: node order differs from the annotation order
    source = PretrainItemSource(graphs, ds.captions, {}, caption_groundings(ds))
    data = PretrainingData(source, 6, seed=0)
    phrases = 0
    for k in range(data.steps_per_epoch):
        b = data.batch(0, k)
        for g, cap, found in zip(b.graphs.to_data_list(), b.captions, b.groundings, strict=True):
            assert found, cap  # every benchmark caption has a grounded phrase
            segs = {s.id: s for s in labels[int(g.image_id)]}
            for start, end, nodes in found:
                words = cap[start:end].split()
                for n in nodes:
                    seg = segs[int(g.segment_id[n])]
                    assert words[-1].startswith(seg.category), (cap, seg)
                    assert all(w in seg.attributes.values() for w in words[:-1])
                phrases += 1
    assert phrases >= len(ds.image_ids)


def test_resuming_a_run_from_before_token_positions_keeps_its_itm_head(tmp_path):
    import json

    from neurogshn.jobs.pretrain import keep_legacy_itm_head
    from neurogshn.training.config import TrainConfig

    ckpt = tmp_path / "checkpoints" / "step-00000010"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"embed_dim": 16}))
    cfg, said = TrainConfig(), []
    keep_legacy_itm_head(cfg, tmp_path / "checkpoints", said.append)
    assert cfg.model.overrides["itm_token_position"] is False and "predates" in said[0]
    assert cfg.model.overrides["itm_mlm_weight"] == 0.0
    (ckpt / "config.json").write_text(json.dumps({"embed_dim": 16, "itm_token_position": True}))
    cfg = TrainConfig()
    keep_legacy_itm_head(cfg, tmp_path / "checkpoints", said.append)
    assert "itm_token_position" not in cfg.model.overrides
