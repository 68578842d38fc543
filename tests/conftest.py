"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Size of the shared tiny benchmark (train, val, test images; image side in pixels).
SCENES_SPLITS: dict[str, int] = {"train": 24, "val": 8, "test": 8}
SCENES_IMAGE_SIZE: int = 96
SCENES_SEED: int = 0


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated relational-scenes data set (train 24, val 8, test 8 images, 96 px),
    generated once per test session. Treat it as read-only: copy it before modifying."""
    from neurogshn.data.relational.scenes import generate_scenes

    root = tmp_path_factory.mktemp("scenes") / "data"
    return generate_scenes(
        root,
        seed=SCENES_SEED,
        splits=dict(SCENES_SPLITS),
        image_size=SCENES_IMAGE_SIZE,
        progress=False,
    )
