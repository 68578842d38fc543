"""Node features of a scene graph: pooled backbone features, geometry, colour, category, flags.

Layout of one row of ``x`` (see :class:`FeatureLayout`, docs/graphs.md), for ``V`` categories:

=========== ============ ====================================================================
columns     name         content
=========== ============ ====================================================================
0:D         visual       area-weighted mean of each backbone stage over the region, stages
                         concatenated (EfficientNet-Lite0: 40 + 112 + 320 = 472)
D:D+7       geometry     box x, y, w, h, centroid x, centroid y, area fraction — all in [0, 1]
D+7:D+10    color        mean R, G, B of the region's pixels in [0, 1]
D+10:D+11+V category     one-hot over the vocabulary, last slot = "unknown" (category None or
                         not in the vocabulary); all zeros for the global node
D+11+V:+2   flags        is_global, is_thing
=========== ============ ====================================================================

Pooling (stage ``k``, cell ``c``, region ``r``): ``f_r = Σ_c w_rc F_c / Σ_c w_rc`` where
``w_rc`` is the number of the region's pixels inside cell ``c`` (exact, no mask resizing), so a
segment of a few pixels still gets the features of the cell(s) it lies in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurogshn.features.regions import Regions, region_cell_weights, region_mean_colors

#: Bump when the meaning of any feature column changes (part of every graph-cache key).
FEATURE_VERSION = 1

GEOMETRY_COLUMNS = ("box_x", "box_y", "box_w", "box_h", "centroid_x", "centroid_y", "area")
COLOR_COLUMNS = ("mean_r", "mean_g", "mean_b")
FLAG_COLUMNS = ("is_global", "is_thing")


@dataclass(frozen=True)
class FeatureLayout:
    """Which columns of the node feature matrix ``x`` hold what.

    Args:
        visual_dim: pooled backbone feature length ``D``.
        categories: the category vocabulary, by name, in one-hot order.
        stage_dims: channels of each backbone stage (their concatenation is ``visual``).
    """

    visual_dim: int
    categories: tuple[str, ...] = ()
    stage_dims: tuple[int, ...] = field(default=())

    @property
    def num_category_slots(self) -> int:
        return len(self.categories) + 1

    @property
    def slices(self) -> dict[str, slice]:
        """Column ranges: ``visual``, ``geometry``, ``color``, ``category``, ``flags``."""
        d = self.visual_dim
        c0 = d + len(GEOMETRY_COLUMNS) + len(COLOR_COLUMNS)
        c1 = c0 + self.num_category_slots
        return {
            "visual": slice(0, d),
            "geometry": slice(d, d + len(GEOMETRY_COLUMNS)),
            "color": slice(d + len(GEOMETRY_COLUMNS), c0),
            "category": slice(c0, c1),
            "flags": slice(c1, c1 + len(FLAG_COLUMNS)),
        }

    @property
    def dim(self) -> int:
        return self.slices["flags"].stop

    def column_names(self) -> list[str]:
        """One name per column of ``x``."""
        names = [f"visual_{i}" for i in range(self.visual_dim)]
        names += list(GEOMETRY_COLUMNS) + list(COLOR_COLUMNS)
        names += [f"category={c}" for c in self.categories] + ["category=unknown"]
        return names + list(FLAG_COLUMNS)

    def category_slot(self, name: str | None) -> int:
        """One-hot slot of a category name (the unknown slot for ``None`` / unseen names)."""
        if name is not None:
            try:
                return self.categories.index(name)
            except ValueError:
                pass
        return len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        return {
            "visual_dim": self.visual_dim,
            "categories": list(self.categories),
            "stage_dims": list(self.stage_dims),
            "dim": self.dim,
            "slices": {k: [v.start, v.stop] for k, v in self.slices.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureLayout:
        return cls(
            visual_dim=int(d["visual_dim"]),
            categories=tuple(d.get("categories", ())),
            stage_dims=tuple(int(x) for x in d.get("stage_dims", ())),
        )


def pool_stage_features(
    feature_maps: Sequence[torch.Tensor], strides: Sequence[int], regions: Regions
) -> torch.Tensor:
    """Area-weighted pooling of each stage map over each region, stages concatenated.

    Args:
        feature_maps: one ``C_k×h_k×w_k`` map per stage, for ONE image.
        strides: the stage strides ``s_k`` (pixels per cell).
        regions: the image's regions (``S`` of them).

    Returns:
        ``S×ΣC_k`` float32 (on the maps' device).
    """
    outs = []
    for fmap, stride in zip(feature_maps, strides):
        c, h, w = fmap.shape
        weights = region_cell_weights(regions, int(stride), h, w, fmap.device)
        norm = weights.sum(1, keepdim=True).clamp_min(1e-6)
        outs.append((weights @ fmap.reshape(c, h * w).float().T) / norm)
    return torch.cat(outs, dim=1)


def global_stage_features(feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Whole-image mean of each stage, concatenated: ``1×ΣC_k``."""
    return torch.cat([f.float().mean(dim=(1, 2)) for f in feature_maps]).unsqueeze(0)


def node_features(
    image: np.ndarray,
    regions: Regions,
    feature_maps: Sequence[torch.Tensor],
    strides: Sequence[int],
    layout: FeatureLayout,
) -> torch.Tensor:
    """The ``(S+1)×F`` node feature matrix of one image, global node first (row 0).

    The global node has the whole-image pooled visual features, box ``(0, 0, 1, 1)``, centroid
    ``(0.5, 0.5)``, area 1, the mean colour of the image, an all-zero category block and
    ``is_global = 1``.
    """
    s = len(regions)
    device = feature_maps[0].device if feature_maps else torch.device("cpu")
    x = torch.zeros(s + 1, layout.dim, dtype=torch.float32, device=device)
    sl = layout.slices
    x[0, sl["visual"]] = global_stage_features(feature_maps)[0]
    x[0, sl["geometry"]] = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 1.0], device=device)
    img = np.asarray(image, dtype=np.float64) / 255.0
    x[0, sl["color"]] = torch.tensor(img.reshape(-1, 3).mean(0), dtype=torch.float32, device=device)
    x[0, sl["flags"].start] = 1.0
    if s == 0:
        return x
    x[1:, sl["visual"]] = pool_stage_features(feature_maps, strides, regions)
    geom = np.concatenate(
        [regions.boxes_norm, regions.centroids, regions.area_fractions[:, None]], axis=1
    )
    x[1:, sl["geometry"]] = torch.as_tensor(geom, dtype=torch.float32, device=device)
    colors = region_mean_colors(image, regions)
    x[1:, sl["color"]] = torch.as_tensor(colors, dtype=torch.float32, device=device)
    slots = torch.tensor([layout.category_slot(c) for c in regions.categories], device=device)
    x[1 + torch.arange(s, device=device), sl["category"].start + slots] = 1.0
    x[1:, sl["flags"].start + 1] = torch.as_tensor(
        regions.is_thing, dtype=torch.float32, device=device
    )
    return x
