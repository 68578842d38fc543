"""On-disk graph cache and the :class:`GraphDataset` every trainer reads.

One cache entry per (data set root + content fingerprint, split, segmenter and its options,
backbone, node set, edge set and builder options, category vocabulary, feature version):

``<cache_dir>/<split>-<segmenter>-<backbone>-<nodes>-<edges>-<digest>/``
    ``graphs.safetensors``  every graph's tensors concatenated (no pickle)
    ``index.json``          the full key, feature layout, counts, skipped records, timing

``cache_dir`` defaults to ``<root>/.neurogshn_cache/``. The entry is written through
:func:`neurogshn.utils.io.atomic_path` (a killed build leaves no partial entry). Any change of a
key part changes the digest, so a stale entry is never read; when a new entry is written, older
entries with the same ``<split>-<segmenter>-<backbone>-<nodes>-<edges>`` prefix are deleted.

The data set fingerprint hashes the bytes of every JSON file and the (path, size, mtime) of every
other file under ``root`` whose relative path mentions the split (``images/train/…``,
``panoptic_train/…``, ``annotations/panoptic_train.json``, ``train2017/…``); hidden directories
(the cache itself) are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from neurogshn.errors import ConfigError, DataError
from neurogshn.features.segment import FEATURE_VERSION, FeatureLayout
from neurogshn.graph.builder import EDGE_ATTR_COLUMNS, GraphBuilderConfig, SceneGraphBuilder
from neurogshn.utils.io import atomic_path

CACHE_FORMAT_VERSION = 1
DEFAULT_CACHE_DIRNAME = ".neurogshn_cache"
TENSORS_FILE = "graphs.safetensors"
INDEX_FILE = "index.json"

# Per-node and per-edge tensors stored concatenated over graphs.
_NODE_KEYS = ("x", "pos", "is_global", "node_box", "node_category", "segment_id")
_EDGE_KEYS = ("edge_attr",)


# ---------------------------------------------------------------------------------------------
# GraphDataset
# ---------------------------------------------------------------------------------------------


class GraphDataset(Dataset):
    """A list of scene graphs stored as concatenated tensors (what the cache holds).

    Args:
        tensors: ``x, pos, is_global, node_box, node_category, segment_id`` (node-major),
            ``edge_index`` (``2×E``, node indices local to each graph), ``edge_attr``,
            ``node_ptr``/``edge_ptr`` (``G+1`` offsets) and ``image_id`` (``G``).
        layout: the node feature layout.
        info: free-form metadata (cache key, skipped records, …).

    ``ds[i]`` is a PyG ``Data``; ``feature_dim``, ``edge_dim``, ``image_ids``,
    ``get_by_image_id(id)``, ``skipped`` (list of ``{"path", "reason"}``), ``path`` (the cache
    entry or ``None``).
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        layout: FeatureLayout,
        info: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.tensors = tensors
        self.layout = layout
        self.info = info or {}
        self.path = path
        self._node_ptr = tensors["node_ptr"].tolist()
        self._edge_ptr = tensors["edge_ptr"].tolist()
        self._ids = tensors["image_id"].tolist()
        self._pos_of = {int(i): k for k, i in enumerate(self._ids)}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_graphs(
        cls, graphs: Sequence[Data], layout: FeatureLayout, info: dict[str, Any] | None = None
    ) -> GraphDataset:
        """Pack a list of graphs (from :class:`~neurogshn.graph.builder.SceneGraphBuilder`)."""
        f, g_dim = layout.dim, len(EDGE_ATTR_COLUMNS)
        node_counts = [int(g.num_nodes) for g in graphs]
        edge_counts = [int(g.edge_index.shape[1]) for g in graphs]
        t: dict[str, torch.Tensor] = {
            "node_ptr": torch.tensor([0, *node_counts]).cumsum(0),
            "edge_ptr": torch.tensor([0, *edge_counts]).cumsum(0),
            "image_id": torch.tensor([int(g.image_id) for g in graphs], dtype=torch.long),
        }
        empty = {
            "x": torch.zeros(0, f),
            "pos": torch.zeros(0, 2),
            "is_global": torch.zeros(0, dtype=torch.bool),
            "node_box": torch.zeros(0, 4),
            "node_category": torch.zeros(0, dtype=torch.long),
            "segment_id": torch.zeros(0, dtype=torch.long),
            "edge_attr": torch.zeros(0, g_dim),
        }
        for key in _NODE_KEYS + _EDGE_KEYS:
            parts = [getattr(g, key) for g in graphs]
            t[key] = torch.cat(parts).contiguous() if parts else empty[key]
        t["edge_index"] = (
            torch.cat([g.edge_index for g in graphs], dim=1).contiguous()
            if graphs
            else torch.zeros(2, 0, dtype=torch.long)
        )
        return cls(t, layout, info)

    # -- Dataset API --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, idx: int) -> Data:
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"graph index {idx} out of range for {len(self)} graphs")
        n0, n1 = self._node_ptr[idx], self._node_ptr[idx + 1]
        e0, e1 = self._edge_ptr[idx], self._edge_ptr[idx + 1]
        t = self.tensors
        return Data(
            x=t["x"][n0:n1],
            edge_index=t["edge_index"][:, e0:e1],
            edge_attr=t["edge_attr"][e0:e1],
            pos=t["pos"][n0:n1],
            is_global=t["is_global"][n0:n1],
            node_box=t["node_box"][n0:n1],
            node_category=t["node_category"][n0:n1],
            segment_id=t["segment_id"][n0:n1],
            image_id=int(self._ids[idx]),
            num_nodes=n1 - n0,
        )

    @property
    def feature_dim(self) -> int:
        return self.layout.dim

    @property
    def edge_dim(self) -> int:
        return len(EDGE_ATTR_COLUMNS)

    @property
    def image_ids(self) -> list[int]:
        return list(self._ids)

    def get_by_image_id(self, image_id: int) -> Data:
        if int(image_id) not in self._pos_of:
            raise KeyError(f"image_id {image_id} is not in this graph data set")
        return self[self._pos_of[int(image_id)]]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.info.get("skipped", []))

    def stats(self) -> dict[str, float]:
        """Graph count, mean/min/max nodes and edges per graph."""
        n = self.tensors["node_ptr"].diff().float()
        e = self.tensors["edge_ptr"].diff().float()
        if len(n) == 0:
            return {"graphs": 0}
        return {
            "graphs": len(n),
            "nodes_mean": n.mean().item(),
            "nodes_min": n.min().item(),
            "nodes_max": n.max().item(),
            "edges_mean": e.mean().item(),
            "edges_min": e.min().item(),
            "edges_max": e.max().item(),
        }

    # -- files --------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``graphs.safetensors`` + ``index.json`` into ``directory`` atomically."""
        from safetensors.torch import save_file

        final = Path(directory)
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(tmp / TENSORS_FILE))
            index = {
                "format_version": CACHE_FORMAT_VERSION,
                **self.info,
                "layout": self.layout.to_dict(),
                "edge_columns": list(EDGE_ATTR_COLUMNS),
                "num_graphs": len(self),
                "num_nodes": int(self.tensors["node_ptr"][-1]),
                "num_edges": int(self.tensors["edge_ptr"][-1]),
            }
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        self.path = final
        return final

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> GraphDataset:
        """Read a directory written by :meth:`save` (``DataError`` naming the file if bad)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(directory)
        index_path = d / INDEX_FILE
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(index_path, f"unreadable graph-cache index: {exc}") from exc
        if index.get("format_version") != CACHE_FORMAT_VERSION:
            raise DataError(
                index_path,
                f"cache format {index.get('format_version')} is not {CACHE_FORMAT_VERSION}",
            )
        try:
            tensors = load_file(str(d / TENSORS_FILE))
        except (OSError, SafetensorError, ValueError) as exc:
            raise DataError(d / TENSORS_FILE, f"unreadable graph-cache tensors: {exc}") from exc
        missing = {"node_ptr", "edge_ptr", "image_id", "edge_index", *_NODE_KEYS, *_EDGE_KEYS}
        missing -= set(tensors)
        if missing:
            raise DataError(d / TENSORS_FILE, f"graph cache lacks tensors {sorted(missing)}")
        info = {k: v for k, v in index.items() if k not in ("layout",)}
        ds = cls(tensors, FeatureLayout.from_dict(index["layout"]), info, path=d)
        if len(ds) != index.get("num_graphs") or ds.tensors["x"].shape[1] != ds.feature_dim:
            raise DataError(d / TENSORS_FILE, "graph cache tensors disagree with index.json")
        return ds


# ---------------------------------------------------------------------------------------------
# Keys and fingerprints
# ---------------------------------------------------------------------------------------------


def dataset_fingerprint(root: str | os.PathLike[str], split: str) -> str:
    """Hash of what the split's graphs depend on (see module doc): 16 hex digits."""
    root = Path(root).resolve()
    h = hashlib.sha256()
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            rel = rel_dir / name
            if name.startswith(".") or not any(split in part for part in rel.parts):
                continue
            entries.append((rel.as_posix(), Path(dirpath) / name))
    for rel, path in sorted(entries):
        st = path.stat()
        h.update(rel.encode())
        if path.suffix.lower() == ".json":
            h.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@dataclass
class CacheKey:
    """Everything a cached graph depends on."""

    root: str
    split: str
    fingerprint: str
    segmenter: dict[str, Any]
    backbone: str
    builder: dict[str, Any]
    categories: list[str]
    feature_version: int = FEATURE_VERSION
    format_version: int = CACHE_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-normalised (tuples → lists, unknown objects → str), so that a key read back
        from ``index.json`` compares equal."""

        return json.loads(json.dumps(asdict(self), sort_keys=True, default=str))

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def prefix(self) -> str:
        seg = str(self.segmenter.get("name", "segmenter"))
        return (
            f"{self.split}-{seg}-{self.backbone}-{self.builder['nodes']}-{self.builder['edges']}-"
        )

    def dirname(self) -> str:
        return self.prefix() + self.digest()


def default_cache_dir(root: str | os.PathLike[str]) -> Path:
    """``<root>/.neurogshn_cache``."""
    return Path(root) / DEFAULT_CACHE_DIRNAME


# ---------------------------------------------------------------------------------------------
# Build / load
# ---------------------------------------------------------------------------------------------


def _open_dataset(root: Path, split: str, strict: bool) -> Any:
    from neurogshn.data.coco import CocoPanopticDataset

    return CocoPanopticDataset(root, split, strict=strict)


def _skipped_dicts(items: Any) -> list[dict[str, str]]:
    out = []
    for s in items or []:
        out.append({"path": str(getattr(s, "path", "")), "reason": str(getattr(s, "reason", s))})
    return out


def dataset_category_names(dataset: Any) -> list[str]:
    """Category names of a data set (``dataset.categories``), in category-id order: the
    one-hot vocabulary of the node features."""
    cats = getattr(dataset, "categories", None) or {}
    return [str(cats[k]["name"]) for k in sorted(cats)]


@dataclass
class CacheResult:
    """What :func:`build_graph_cache` did."""

    dataset: GraphDataset
    path: Path
    built: bool
    seconds: float


def build_graph_cache(
    root: str | os.PathLike[str],
    split: str,
    *,
    segmenter: Any = "gt",
    segmenter_kwargs: dict[str, Any] | None = None,
    backbone: str = "efficientnet_lite0",
    nodes: str = "panoptic",
    edges: str = "full",
    builder_config: GraphBuilderConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    force: bool = False,
    dataset: Any = None,
) -> CacheResult:
    """Build (or reuse) the graph cache of one split.

    Args:
        root: data set root (COCO panoptic layout, see docs/data.md).
        split: ``train`` / ``val`` / ``test`` / …
        segmenter: registry name or a segmenter object (its ``config()`` enters the key).
        segmenter_kwargs: options for :func:`~neurogshn.segmentation.get_segmenter`.
        backbone: registry name (:func:`~neurogshn.features.get_backbone`).
        nodes, edges: node set and edge set (override ``builder_config``'s fields).
        builder_config: kNN ``k``, adjacency radius, patch grid.
        cache_dir: where entries live (default ``<root>/.neurogshn_cache``).
        strict: stop at the first bad record (``DataError``) instead of skipping it.
        progress: show a tqdm progress bar.
        device: backbone device (``None``: CUDA when available).
        batch_size: images per backbone pass.
        force: rebuild even when a valid entry exists.
        dataset: an already opened ``CocoPanopticDataset`` of this root/split (optional).

    Returns:
        :class:`CacheResult` with the dataset, the entry path, whether it was (re)built and the
        build/load time in seconds.
    """
    from neurogshn.features.backbone import get_backbone
    from neurogshn.segmentation import get_segmenter, segment_record, segmenter_config

    t0 = time.perf_counter()
    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(root_p, "data set root does not exist or is not a directory")
    cfg = GraphBuilderConfig(
        **{**(builder_config or GraphBuilderConfig()).to_dict(), "nodes": nodes, "edges": edges}
    )
    seg_obj = (
        get_segmenter(segmenter, **(segmenter_kwargs or {}))
        if isinstance(segmenter, str)
        else segmenter
    )
    ds = dataset if dataset is not None else _open_dataset(root_p, split, strict)
    categories = dataset_category_names(ds)
    key = CacheKey(
        root=str(root_p.resolve()),
        split=split,
        fingerprint=dataset_fingerprint(root_p, split),
        segmenter=segmenter_config(seg_obj),
        backbone=backbone,
        builder=cfg.to_dict(),
        categories=categories,
    )
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir(root_p)
    entry = base / key.dirname()

    if entry.is_dir() and not force:
        cached = None
        try:
            cached = GraphDataset.load(entry)
        except DataError as exc:
            warnings.warn(f"rebuilding damaged graph cache: {exc}", stacklevel=2)
        if cached is not None and cached.info.get("key") == key.to_dict():
            _check_cached_skips(cached.skipped, entry, strict)
            return CacheResult(cached, entry, False, time.perf_counter() - t0)

    from tqdm.auto import tqdm

    builder = SceneGraphBuilder(get_backbone(backbone, device), categories, cfg)
    skipped = _skipped_dicts(getattr(ds, "skipped", []))
    n_before = len(skipped)
    graphs: list[Data] = []
    pending: list[Any] = []

    def flush() -> None:
        if not pending:
            return
        if hasattr(seg_obj, "segment_batch") and not getattr(
            seg_obj, "requires_annotations", False
        ):
            segs = seg_obj.segment_batch([r.image for r in pending])
        else:
            segs = [segment_record(seg_obj, r) for r in pending]
        graphs.extend(
            builder.build_batch(
                [r.image for r in pending], segs, [int(r.image_id) for r in pending]
            )
        )
        pending.clear()

    with tqdm(total=len(ds), desc=f"graphs {split}", unit="img", disable=not progress) as bar:
        for i in range(len(ds)):
            try:
                rec = ds[i]
            except DataError as exc:
                if strict:
                    raise
                skipped.append({"path": exc.path, "reason": exc.problem})
                bar.update(1)
                continue
            pending.append(rec)
            if len(pending) >= batch_size:
                flush()
            bar.update(1)
        flush()
    # The loader may discover further bad records lazily while iterating.
    skipped += _skipped_dicts(getattr(ds, "skipped", []))[n_before:]
    seen: set[tuple[str, str]] = set()
    unique_skipped = []
    for s in skipped:
        if (s["path"], s["reason"]) not in seen:
            seen.add((s["path"], s["reason"]))
            unique_skipped.append(s)

    info = {
        "key": key.to_dict(),
        "digest": key.digest(),
        "skipped": unique_skipped,
        "build_seconds": round(time.perf_counter() - t0, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result = GraphDataset.from_graphs(graphs, builder.layout, info)
    result.save(entry)
    # Drop stale entries of the same split/segmenter/backbone/nodes/edges.
    for old in base.glob(key.prefix() + "*"):
        if old.is_dir() and old.name != entry.name and len(old.name) == len(entry.name):
            shutil.rmtree(old, ignore_errors=True)
    return CacheResult(result, entry, True, time.perf_counter() - t0)


def _check_cached_skips(skipped: list[dict[str, Any]], entry: Path, strict: bool) -> None:
    """A cache built leniently records the records it skipped. A strict reader gets the error
    a strict build would have raised (the first skipped file and why); a lenient one a warning
    that names them, so that fewer images never go unexplained."""
    if not skipped:
        return
    first = skipped[0]
    if strict:
        raise DataError(
            first.get("path", entry),
            f"{first.get('reason', 'skipped')} (recorded when the lenient graph cache {entry} "
            f"was built; {len(skipped)} record(s) skipped there: fix them, or read without "
            "--strict)",
        )
    shown = "; ".join(f"{s.get('path')}: {s.get('reason')}" for s in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    warnings.warn(
        f"graph cache {entry} was built without {len(skipped)} record(s): {shown}{more}",
        stacklevel=3,
    )


def load_graph_dataset(
    root: str | os.PathLike[str],
    split: str,
    *,
    segmenter: Any = "gt",
    backbone: str = "efficientnet_lite0",
    nodes: str = "panoptic",
    edges: str = "full",
    cache_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> GraphDataset:
    """The split's graphs, from the cache when valid, else built and cached first.

    Same arguments as :func:`build_graph_cache` (extra keyword arguments go there).
    """
    if split == "all":
        raise ConfigError("load_graph_dataset takes one split; 'all' is a CLI convenience")
    return build_graph_cache(
        root,
        split,
        segmenter=segmenter,
        backbone=backbone,
        nodes=nodes,
        edges=edges,
        cache_dir=cache_dir,
        strict=strict,
        progress=progress,
        device=device,
        **kwargs,
    ).dataset
