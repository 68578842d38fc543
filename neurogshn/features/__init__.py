"""Segment features: backbones (multi-scale maps), region pooling, the node feature layout."""

from neurogshn.features.backbone import (
    BACKBONES,
    BackboneStage,
    EfficientNetLite0,
    MultiScaleBackbone,
    get_backbone,
    register_backbone,
)
from neurogshn.features.regions import NODE_SETS, Regions, build_regions
from neurogshn.features.segment import FEATURE_VERSION, FeatureLayout, node_features

__all__ = [
    "BACKBONES",
    "FEATURE_VERSION",
    "NODE_SETS",
    "BackboneStage",
    "EfficientNetLite0",
    "FeatureLayout",
    "MultiScaleBackbone",
    "Regions",
    "build_regions",
    "get_backbone",
    "node_features",
    "register_backbone",
]
