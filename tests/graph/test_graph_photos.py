"""Real photos (scikit-image samples) through superpixels, the ImageNet backbone and the graph
builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurogshn.features import get_backbone
from neurogshn.features.regions import build_regions
from neurogshn.graph.builder import (
    EDGE_ATTR_COLUMNS,
    GraphBuilderConfig,
    SceneGraphBuilder,
    label_map_adjacency,
)
from neurogshn.segmentation import get_segmenter


@pytest.fixture(scope="module")
def builder() -> SceneGraphBuilder:
    return SceneGraphBuilder(get_backbone("efficientnet_lite0", "cpu"), categories=())


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_photo_to_graph(name: str, builder: SceneGraphBuilder) -> None:
    import skimage.data

    img = getattr(skimage.data, name)()[::2, ::2].copy()  # half size keeps the test fast
    seg = get_segmenter("superpixel", n_segments=24)(img)
    s = len(seg.segments)
    assert s >= 8
    g = builder(img, seg, image_id=7)
    assert g.num_nodes == s + 1 and g.x.shape == (s + 1, builder.layout.dim)
    assert torch.isfinite(g.x).all() and torch.isfinite(g.edge_attr).all()
    assert ((g.pos >= 0) & (g.pos <= 1)).all()
    # Visual features differ between segments (the backbone sees the photo).
    vis = g.x[1:, builder.layout.slices["visual"]]
    assert vis.std(0).mean() > 1e-3
    # Every pair of touching superpixels is joined by an "adjacent" edge, and only those.
    regions = build_regions(seg, "panoptic")
    touching = {tuple(p) for p in (label_map_adjacency(regions.label_map, 2) + 1).tolist()}
    col = EDGE_ATTR_COLUMNS.index("type=adjacent")
    adj = g.edge_index[:, g.edge_attr[:, col] == 1].T.tolist()
    assert {(min(a, b), max(a, b)) for a, b in adj} == touching
    assert len(touching) >= s - 1  # superpixels tile the image: their adjacency is connected
    # Global node linked to every segment both ways.
    gcol = EDGE_ATTR_COLUMNS.index("type=global")
    glob = g.edge_index[:, g.edge_attr[:, gcol] == 1]
    assert set(glob[1][glob[0] == 0].tolist()) == set(range(1, s + 1))
    assert set(glob[0][glob[1] == 0].tolist()) == set(range(1, s + 1))
    # Colour columns agree with the photo's pixels.
    col_sl = builder.layout.slices["color"]
    sid = seg.segments[0].id
    expected = img[seg.segment_map == sid].mean(0) / 255.0
    np.testing.assert_allclose(g.x[1, col_sl].numpy(), expected, atol=1e-5)


def test_photo_node_sets(builder: SceneGraphBuilder) -> None:
    import skimage.data

    img = skimage.data.coffee()[::4, ::4].copy()
    seg = get_segmenter("superpixel", n_segments=16)(img)
    for nodes, n in (("boxes", len(seg.segments) + 1), ("patches", 6 * 6 + 1)):
        b = SceneGraphBuilder(builder.backbone, (), GraphBuilderConfig(nodes=nodes, patch_grid=6))
        g = b(img, seg)
        assert g.num_nodes == n and torch.isfinite(g.x).all()
