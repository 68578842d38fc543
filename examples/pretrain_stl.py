"""Pretrain GSHN with Spiked Text Learning on the embedded relational scenes, end to end.

With no arguments (``python examples/pretrain_stl.py`` or ``make pretrain``): generates the
scenes into ./data/scenes if missing, builds the graph caches, evaluates the untrained model,
pretrains with configs/pretrain_default.json, evaluates image-text retrieval (R@1/5/10 both
ways) and the relational / attribute hard-negative accuracies on the 1,000-image test split,
saves the checkpoint under ./runs/pretrain_stl/<timestamp>/final and prints the untrained and
trained figures side by side. Same options as ``neurogshn pretrain`` (--config, --set, --device,
--resume, --out, --data); see docs/training.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain_default.json"

if __name__ == "__main__":
    from neurogshn.cli.pretrain import main

    sys.exit(main(default_config=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None))
