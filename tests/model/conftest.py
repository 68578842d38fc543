"""Fixtures shared with the loss tests live in tests/gshn_fixtures.py."""

from gshn_fixtures import (  # noqa: F401  (pytest fixtures)
    captions,
    graph_factory,
    make_batch,
    tiny_model,
    tiny_overrides,
)
