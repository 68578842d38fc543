"""Scene graphs (one PyG ``Data`` per image), their builder and the on-disk cache."""

from neurogshn.graph.builder import (
    EDGE_ATTR_COLUMNS,
    EDGE_DIM,
    EDGE_SETS,
    EDGE_TYPES,
    GraphBuilderConfig,
    SceneGraphBuilder,
    build_graph,
)
from neurogshn.graph.cache import GraphDataset, build_graph_cache, load_graph_dataset

__all__ = [
    "EDGE_ATTR_COLUMNS",
    "EDGE_DIM",
    "EDGE_SETS",
    "EDGE_TYPES",
    "GraphBuilderConfig",
    "GraphDataset",
    "SceneGraphBuilder",
    "build_graph",
    "build_graph_cache",
    "load_graph_dataset",
]
