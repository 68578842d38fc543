"""How images become scene graphs: one :class:`GraphConfig` for training, evaluation,
fine-tuning and hardware verification, and the loader of a split's graphs under it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from neurogshn.graph.cache import GraphDataset

#: Files whose ``graph`` section says how a checkpoint's graphs were built: a fine-tuned task's
#: ``task.json`` and a pretraining run's ``train_config.json``.
GRAPH_RECORD_FILES = ("task.json", "train_config.json")


@dataclass
class GraphConfig:
    """How images become scene graphs (arguments of
    :func:`~neurogshn.graph.cache.load_graph_dataset`); a model must be evaluated on graphs
    built the way it was trained on.

    Args:
        segmenter: segmenter name (:mod:`neurogshn.segmentation`; ``gt``: the data set's masks).
        backbone: feature backbone of the node features.
        nodes: node construction (``panoptic`` …).
        edges: edge construction (``full`` …).
        cache_dir: graph cache folder (``None``: ``<root>/.neurogshn_cache``).
    """

    segmenter: str = "gt"
    backbone: str = "efficientnet_lite0"
    nodes: str = "panoptic"
    edges: str = "full"
    cache_dir: str | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> GraphConfig:
        """The ``graph`` section of the first of :data:`GRAPH_RECORD_FILES` found in the
        checkpoint directory or its parent run directory (defaults when there is none). The
        cache folder is not taken over: it was a path on the machine that trained."""
        ckpt = Path(checkpoint)
        for candidate in [d / f for d in (ckpt, ckpt.parent) for f in GRAPH_RECORD_FILES]:
            if candidate.is_file():
                try:
                    graph = json.loads(candidate.read_text()).get("graph") or {}
                except (OSError, json.JSONDecodeError, AttributeError):
                    continue
                names = [f.name for f in fields(cls) if f.name != "cache_dir"]
                return cls(**{k: graph[k] for k in names if k in graph})
        return cls()


def load_graphs(
    root: str | Path,
    split: str,
    config: GraphConfig,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    device: Any = None,
) -> GraphDataset:
    """The split's graphs built as ``config`` says (from the cache when valid); ``cache_dir``
    overrides ``config.cache_dir``."""
    # deferred: the cache pulls in the segmenters and feature backbones
    from neurogshn.graph.cache import load_graph_dataset

    return load_graph_dataset(
        root,
        split,
        segmenter=config.segmenter,
        backbone=config.backbone,
        nodes=config.nodes,
        edges=config.edges,
        cache_dir=cache_dir if cache_dir is not None else config.cache_dir,
        strict=strict,
        progress=progress,
        device=device,
    )


def graph_getter(graphs: GraphDataset) -> tuple[Callable[[int], Data], Callable[[int], bool]]:
    """``(get(image_id) -> Data, has(image_id) -> bool)`` for a graph dataset."""
    ids = set(int(i) for i in graphs.image_ids)
    return graphs.get_by_image_id, ids.__contains__
