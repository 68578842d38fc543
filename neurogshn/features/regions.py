"""Node regions of a scene graph: panoptic segments, their boxes, or a regular patch grid.

A :class:`Regions` record holds what every later stage needs about the regions of one image:
normalised geometry, category, and how to weight backbone cells and pixels when pooling. Pooling
never materialises one full-resolution mask per region: segment regions are pooled from the
label map with ``bincount``, box regions analytically (per-axis overlap of box and cell), so
memory stays ``O(H·W + S·h·w)`` even for COCO images with 100+ segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurogshn.segmentation.base import PanopticSegmentation

NODE_SETS = ("panoptic", "patches", "boxes")


@dataclass
class Regions:
    """The regions (future graph nodes, global node excluded) of one image.

    Args:
        kind: ``"panoptic"`` (segment masks), ``"boxes"`` (segment bounding boxes) or
            ``"patches"`` (regular grid cells).
        height, width: image size in pixels.
        boxes_px: ``S×4`` float ``(x0, y0, x1, y1)`` pixel boxes, ``x1``/``y1`` exclusive.
        centroids: ``S×2`` ``(x, y)`` in [0, 1] (mask centroid of pixel centres for segments,
            box centre otherwise).
        areas: ``S`` pixel counts (mask area for segments, box area otherwise).
        categories: category name or ``None`` per region.
        is_thing: ``S`` bool.
        segment_ids: ``S`` ids in the segmentation (``-1`` for patches).
        label_map: for ``kind="panoptic"``: ``H×W`` int64 region index per pixel, ``-1`` void.
    """

    kind: str
    height: int
    width: int
    boxes_px: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    categories: list[str | None]
    is_thing: np.ndarray
    segment_ids: np.ndarray
    label_map: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.categories)

    @property
    def boxes_norm(self) -> np.ndarray:
        """``S×4`` ``(x, y, w, h)`` in [0, 1] (divided by width / height)."""
        b = self.boxes_px
        scale = np.array([self.width, self.height, self.width, self.height], dtype=np.float64)
        xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
        return (xywh / scale).reshape(-1, 4)

    @property
    def area_fractions(self) -> np.ndarray:
        return self.areas / float(self.height * self.width)


def _segment_label_map(seg: PanopticSegmentation) -> np.ndarray:
    ids = np.array([s.id for s in seg.segments], dtype=np.int64)
    label = np.full(seg.segment_map.shape, -1, dtype=np.int64)
    if len(ids) == 0:
        return label
    order = np.argsort(ids)
    sorted_ids = ids[order]
    flat = seg.segment_map.astype(np.int64).ravel()
    pos = np.searchsorted(sorted_ids, flat)
    pos = np.clip(pos, 0, len(ids) - 1)
    hit = sorted_ids[pos] == flat
    out = label.ravel()
    out[hit] = order[pos[hit]]
    return out.reshape(seg.segment_map.shape)


def regions_from_segmentation(seg: PanopticSegmentation, kind: str = "panoptic") -> Regions:
    """Regions of the segments of ``seg`` (``kind="panoptic"``) or of their boxes (``"boxes"``).

    Segments whose mask is empty in ``segment_map`` are dropped (they cannot be pooled).
    """
    if kind not in ("panoptic", "boxes"):
        raise ValueError(f"kind must be 'panoptic' or 'boxes', got {kind!r}")
    h, w = seg.height, seg.width
    label = _segment_label_map(seg)
    n = len(seg.segments)
    counts = np.bincount(label.ravel() + 1, minlength=n + 1)[1:].astype(np.float64)
    keep = np.nonzero(counts > 0)[0]
    if len(keep) < n:
        remap = np.full(n + 1, -1, dtype=np.int64)
        remap[keep + 1] = np.arange(len(keep))
        label = remap[label + 1]
        counts = counts[keep]
    segs = [seg.segments[i] for i in keep]
    s = len(segs)
    ys, xs = np.indices((h, w), dtype=np.float64)
    flat = label.ravel() + 1
    sum_x = np.bincount(flat, weights=xs.ravel() + 0.5, minlength=s + 1)[1:]
    sum_y = np.bincount(flat, weights=ys.ravel() + 0.5, minlength=s + 1)[1:]
    boxes = np.zeros((s, 4), dtype=np.float64)
    if s:
        big = np.iinfo(np.int64).max
        valid = flat > 0
        idx = flat[valid] - 1
        xv = xs.ravel()[valid].astype(np.int64)
        yv = ys.ravel()[valid].astype(np.int64)
        x0 = np.full(s, big)
        y0 = np.full(s, big)
        x1 = np.full(s, -1)
        y1 = np.full(s, -1)
        np.minimum.at(x0, idx, xv)
        np.minimum.at(y0, idx, yv)
        np.maximum.at(x1, idx, xv)
        np.maximum.at(y1, idx, yv)
        boxes = np.stack([x0, y0, x1 + 1, y1 + 1], axis=1).astype(np.float64)
    if kind == "panoptic":
        centroids = np.stack(
            [sum_x / np.maximum(counts, 1) / w, sum_y / np.maximum(counts, 1) / h], 1
        )
        areas = counts
        label_map = label
    else:
        centroids = np.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h], 1
        )
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        label_map = None
    return Regions(
        kind=kind,
        height=h,
        width=w,
        boxes_px=boxes.reshape(-1, 4),
        centroids=centroids.reshape(-1, 2),
        areas=np.asarray(areas, dtype=np.float64).reshape(-1),
        categories=[sg.category for sg in segs],
        is_thing=np.array([sg.is_thing for sg in segs], dtype=bool),
        segment_ids=np.array([sg.id for sg in segs], dtype=np.int64),
        label_map=label_map,
    )


def patch_regions(height: int, width: int, grid: int) -> Regions:
    """A regular ``grid×grid`` tiling (ViLT-like patches), row-major from the top-left.

    Cell edges are ``round(k·H/grid)``, so every pixel belongs to exactly one patch.
    """
    if grid < 1:
        raise ValueError(f"patch grid must be >= 1, got {grid}")
    ey = np.round(np.linspace(0, height, grid + 1))
    ex = np.round(np.linspace(0, width, grid + 1))
    boxes = np.array(
        [[ex[j], ey[i], ex[j + 1], ey[i + 1]] for i in range(grid) for j in range(grid)],
        dtype=np.float64,
    )
    centroids = np.stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2 / width, (boxes[:, 1] + boxes[:, 3]) / 2 / height], 1
    )
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    n = grid * grid
    return Regions(
        kind="patches",
        height=height,
        width=width,
        boxes_px=boxes,
        centroids=centroids,
        areas=areas,
        categories=[None] * n,
        is_thing=np.zeros(n, dtype=bool),
        segment_ids=np.full(n, -1, dtype=np.int64),
    )


def build_regions(seg: PanopticSegmentation, nodes: str, patch_grid: int = 8) -> Regions:
    """Regions for the node set ``nodes`` (one of :data:`NODE_SETS`)."""
    if nodes == "patches":
        return patch_regions(seg.height, seg.width, patch_grid)
    if nodes in ("panoptic", "boxes"):
        return regions_from_segmentation(seg, nodes)
    raise ValueError(f"nodes must be one of {NODE_SETS}, got {nodes!r}")


# ---------------------------------------------------------------------------------------------
# Pooling weights
# ---------------------------------------------------------------------------------------------


def label_cell_weights(
    label_map: torch.Tensor, num: int, stride: int, h: int, w: int
) -> torch.Tensor:
    """Pixels of each region in each ``stride×stride`` backbone cell.

    Args:
        label_map: ``H×W`` long, region index per pixel, ``-1`` void.
        num: number of regions ``S``.

    Returns:
        ``S×(h·w)`` float: exact covered pixel counts, so a region smaller than one cell still
        gets the (fractional) cell it lies in.
    """
    hh, ww = label_map.shape
    ys = torch.arange(hh, device=label_map.device) // stride
    xs = torch.arange(ww, device=label_map.device) // stride
    cell = (ys.clamp_max(h - 1)[:, None] * w + xs.clamp_max(w - 1)[None, :]).reshape(-1)
    lab = label_map.reshape(-1)
    valid = lab >= 0
    flat = lab[valid] * (h * w) + cell[valid]
    counts = torch.bincount(flat, minlength=num * h * w)
    return counts.view(num, h * w).float()


def box_cell_weights(boxes_px: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    """Pixel overlap of each box ``(x0, y0, x1, y1)`` with each backbone cell: ``S×(h·w)``."""
    dev = boxes_px.device
    cx0 = torch.arange(w, device=dev, dtype=torch.float32) * stride
    cy0 = torch.arange(h, device=dev, dtype=torch.float32) * stride
    b = boxes_px.float()
    ox = (torch.minimum(b[:, 2:3], cx0 + stride) - torch.maximum(b[:, 0:1], cx0)).clamp_min(0)
    oy = (torch.minimum(b[:, 3:4], cy0 + stride) - torch.maximum(b[:, 1:2], cy0)).clamp_min(0)
    return (oy[:, :, None] * ox[:, None, :]).reshape(len(b), h * w)


def region_cell_weights(
    regions: Regions, stride: int, h: int, w: int, device: torch.device
) -> torch.Tensor:
    """``S×(h·w)`` pooling weights of ``regions`` for a map of stride ``stride``."""
    if regions.label_map is not None:
        lab = torch.from_numpy(regions.label_map).to(device)
        return label_cell_weights(lab, len(regions), stride, h, w)
    return box_cell_weights(torch.from_numpy(regions.boxes_px).to(device), stride, h, w)


def region_mean_colors(image: np.ndarray, regions: Regions) -> np.ndarray:
    """Mean RGB in [0, 1] of each region's pixels: ``S×3``."""
    img = np.asarray(image, dtype=np.float64) / 255.0
    s = len(regions)
    if s == 0:
        return np.zeros((0, 3))
    if regions.label_map is not None:
        flat = regions.label_map.ravel() + 1
        counts = np.bincount(flat, minlength=s + 1)[1:]
        sums = np.stack(
            [np.bincount(flat, weights=img[..., c].ravel(), minlength=s + 1)[1:] for c in range(3)],
            1,
        )
        return sums / np.maximum(counts, 1)[:, None]
    # Boxes: summed-area table, O(H·W + S).
    sat = np.zeros((img.shape[0] + 1, img.shape[1] + 1, 3))
    sat[1:, 1:] = img.cumsum(0).cumsum(1)
    b = regions.boxes_px.astype(np.int64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    sums = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return sums / area[:, None]
