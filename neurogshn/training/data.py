"""Pretraining batches: images, one of their captions, and that caption's hard negative.

Every step draws ``batch_size`` images (a seeded permutation per epoch, split between DDP ranks
by :class:`torch.utils.data.DistributedSampler`), then for each image one of its captions and,
when the hard-negatives file has any for that caption, one of its hard negatives (of the
kinds allowed, by default every kind the file has) — all from a generator seeded by
``(seed, epoch, batch index, rank)``. Batch ``b`` of epoch ``e`` is therefore a pure function of
the seed, so an interrupted run resumes with exactly the batches it would have seen: the
checkpoint only needs the epoch and the batch index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from neurogshn.errors import DataError


def step_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across processes and Python versions)."""
    text = "/".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def caption_position(captions: Sequence[str], index: int, text: str) -> int | None:
    """Where a hard-negative item's caption stands in an image's loaded ``captions``.

    The file's ``caption_index`` counts the image's captions in file order; a caption the
    loader skipped (malformed, empty) shifts the ones after it. So the index is used only when
    the caption there is the item's text; otherwise the text is looked up, and ``None`` means
    the caption is not among the loaded ones (its negatives are dropped)."""
    text = text.strip()
    if 0 <= index < len(captions) and captions[index] == text:
        return index
    for k, caption in enumerate(captions):
        if caption == text:
            return k
    return None


def load_hard_negatives(
    path: str | Path, captions: Mapping[int, Sequence[str]] | None = None
) -> dict[tuple[int, int], dict[str, str]]:
    """``{(image_id, caption position): {kind: negative caption}}`` from a hard-negatives file.

    Parsed by :func:`neurogshn.data.tasks.load_hard_negatives`; null negatives are left out.
    With ``captions`` (the split's loaded captions) each item is placed at its caption's
    position in that list (:func:`caption_position`), so that skipped captions cannot pair a
    caption with another caption's negatives; without, at the file's ``caption_index``.
    """
    from neurogshn.data.tasks import load_hard_negatives as load_task_file

    out: dict[tuple[int, int], dict[str, str]] = {}
    for item in load_task_file(Path(path)).items:
        negatives = item.negatives()
        if not negatives:
            continue
        k: int | None = item.caption_index
        if captions is not None:
            k = caption_position(captions.get(item.image_id, ()), item.caption_index, item.caption)
            if k is None:
                continue
        out.setdefault((item.image_id, k), {}).update(negatives)
    return out


@dataclass
class PretrainItemSource:
    """What a pretraining step samples from.

    Attributes:
        graphs: a graph dataset (``len``, ``__getitem__`` → PyG ``Data``; ``image_ids``).
        captions: ``{image_id: [caption, …]}``.
        hard_negatives: ``{(image_id, caption_index): {kind: negative}}``.
        groundings: ``{(image_id, caption_index): phrases}`` (``PhraseGrounding``, from
            :func:`neurogshn.data.grounding.caption_groundings`); the phrases' segment ids are
            mapped to node indices through each graph's ``segment_id``. Empty: no grounding.
        where: what an error about the source names (e.g. the data root and split).
    """

    graphs: Any
    captions: Mapping[int, Sequence[str]]
    hard_negatives: Mapping[tuple[int, int], Mapping[str, str]]
    groundings: Mapping[tuple[int, int], Sequence[Any]] = field(default_factory=dict)
    where: str = "<training split>"


class _IndexDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class PretrainingData:
    """Deterministic pretraining batches for one process.

    Args:
        source: graphs, captions and hard negatives of the training split.
        batch_size: images per step on this process.
        seed: seeds the data order and the caption / hard-negative draws.
        rank, world_size: this process's share (DistributedSampler).
        kinds: hard-negative kinds a step may draw (``None``: every kind of the file).
        max_images: use only the first N images with captions.
        batch_type: the batch class, called as ``batch_type(graphs, captions, hard_negatives)``
            (default :class:`neurogshn.losses.objective.PretrainBatch`).

    Raises:
        DataError: when no image has both a graph and a caption.
    """

    def __init__(
        self,
        source: PretrainItemSource,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        kinds: Sequence[str] | None = None,
        max_images: int | None = None,
        batch_type: Any = None,
    ) -> None:
        if kinds is None:
            kinds = list(dict.fromkeys(k for negs in source.hard_negatives.values() for k in negs))
        self.source = source
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.kinds = tuple(kinds)
        self.batch_type = batch_type
        ids = getattr(source.graphs, "image_ids", None)
        if ids is None:
            ids = [int(source.graphs[i].image_id) for i in range(len(source.graphs))]
        self.rows = [(i, int(a)) for i, a in enumerate(ids) if source.captions.get(int(a))]
        if max_images is not None:
            self.rows = self.rows[: int(max_images)]
        if not self.rows:
            raise DataError(source.where, "no image has both a graph and a caption")
        self.sampler = DistributedSampler(
            _IndexDataset(len(self.rows)),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=False,
        )
        self._order_epoch: int | None = None
        self._order: list[int] = []

    @property
    def num_images(self) -> int:
        return len(self.rows)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch on each rank (at least one)."""
        return max(1, len(self.sampler) // self.batch_size)

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's image rows in epoch ``epoch`` (a seeded permutation)."""
        if self._order_epoch != epoch:
            self.sampler.set_epoch(epoch)
            self._order = list(iter(self.sampler))
            self._order_epoch = epoch
        return self._order

    def batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of epoch ``epoch`` as a ``PretrainBatch``.

        Shapes:
            graphs: a PyG ``Batch`` of B graphs; captions and hard_negatives: B entries
            (``None`` where the caption has no hard negative of an allowed kind).
        """
        from torch_geometric.data import Batch

        batch_type = self.batch_type
        if batch_type is None:
            from neurogshn.losses.objective import PretrainBatch as batch_type
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch {index} outside 0..{self.steps_per_epoch - 1}")
        order = self.epoch_order(epoch)
        rows = order[index * self.batch_size : (index + 1) * self.batch_size]
        gen = torch.Generator().manual_seed(step_seed(self.seed, epoch, index, self.rank))
        graphs, captions, negatives, kinds, phrases = [], [], [], [], []
        for row in rows:
            graph_index, image_id = self.rows[row]
            graph = self.source.graphs[graph_index]
            graphs.append(graph)
            caps = self.source.captions[image_id]
            c = int(torch.randint(len(caps), (1,), generator=gen))
            captions.append(str(caps[c]))
            phrases.append(phrase_nodes(self.source.groundings.get((image_id, c), ()), graph))
            options = self.source.hard_negatives.get((image_id, c), {})
            available = [k for k in self.kinds if k in options]
            # Always draw, so that the stream of random numbers does not depend on the file.
            pick = int(torch.randint(1 << 30, (1,), generator=gen))
            kind = available[pick % len(available)] if available else None
            negatives.append(None if kind is None else options[kind])
            kinds.append(kind)
        args = [Batch.from_data_list(graphs), captions, negatives]
        if self.source.groundings:
            args.append(phrases)
        if self.batch_type is None:  # ours knows the kinds; a caller's may take three fields
            return batch_type(*args, hard_negative_kinds=kinds)
        return batch_type(*args)


def phrase_nodes(
    phrases: Sequence[Any], graph: Any
) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Grounded phrases (``start``, ``end``, ``segment_ids``) as ``(start, end, node indices)``
    of ``graph`` (through its ``segment_id``; a graph without it, e.g. of patches, or a segment
    without a node gives no target)."""
    seg = getattr(graph, "segment_id", None)
    if seg is None or not phrases:
        return ()
    node_of = {int(s): k for k, s in enumerate(seg.tolist()) if int(s) >= 0}
    out = []
    for p in phrases:
        nodes = tuple(node_of[s] for s in p.segment_ids if s in node_of)
        if nodes:
            out.append((int(p.start), int(p.end), nodes))
    return tuple(out)
