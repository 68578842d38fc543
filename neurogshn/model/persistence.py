"""A saved GSHN on disk: ``config.json`` + ``model.safetensors``, how they are read back, and
how a file's tensors are matched against a (possibly grown) model.

A configuration that used an option neurogshn no longer has is refused with the option named;
fields added since a checkpoint was written get the value that rebuilds the model as it was
trained (:data:`~neurogshn.model.config.LEGACY_ITM_FIELDS`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.model.config import (
    LEGACY_ITM_FIELDS,
    REMOVED_OPTIONS,
    GSHNConfig,
    removed_options,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def saved_model_files(root: Path) -> tuple[Path, Path]:
    """``(config.json, model.safetensors)`` of a model directory, both checked to exist."""
    if not root.is_dir():
        raise CheckpointError(root, "checkpoint directory does not exist")
    cfg_path, w_path = root / CONFIG_FILE, root / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise CheckpointError(
                p, "missing (a model directory holds config.json and model.safetensors)"
            )
    return cfg_path, w_path


def read_saved_config(cfg_path: Path) -> GSHNConfig:
    """The configuration a model was saved with (every problem a :class:`CheckpointError`
    naming ``config.json``)."""
    try:
        raw = json.loads(cfg_path.read_text())
        if isinstance(raw, dict):
            used = removed_options(raw)
            if used:
                raise CheckpointError(
                    cfg_path,
                    "was trained with option(s) that neurogshn no longer has: "
                    + "; ".join(f"{k} ({v})" for k, v in used.items())
                    + ". They only worked on the embedded benchmark's own words; retrain "
                    "with the open-vocabulary masked language modelling (itm_mlm_weight)",
                )
            raw = {k: v for k, v in raw.items() if k not in REMOVED_OPTIONS}
            # written before some ITM-head fields existed: rebuild the head as trained
            for key, value in LEGACY_ITM_FIELDS.items():
                raw.setdefault(key, value)
        return GSHNConfig.from_dict(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(cfg_path, f"not valid JSON: {exc}") from None
    except ConfigError as exc:
        raise CheckpointError(cfg_path, str(exc)) from None


def fit_state_to_model(
    state: dict[str, Tensor], expected: Mapping[str, Tensor], w_path: Path, grow: bool
) -> list[str]:
    """Check a file's tensors against the model's; the keys the model adds (returned).

    With ``grow`` (the configuration was changed on load), tensors the model has and the
    file lacks are new parameters (kept fresh) and a tensor with fewer rows than the model's
    gets the model's fresh rows after its own; without, any difference is an error.

    Raises:
        CheckpointError: naming ``w_path`` and the missing, unexpected and mismatched keys.
    """
    absent = sorted(set(expected) - set(state))
    added, missing = (absent, []) if grow else ([], absent)
    if added:
        log.info("%s: new parameters (freshly initialised): %s", w_path.parent, ", ".join(added))
    if grow:
        grown = _grow_rows(state, expected)
        if grown:
            log.info(
                "%s: new output rows (freshly initialised) of %s", w_path.parent, ", ".join(grown)
            )
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or shapes:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", shapes),
        ):
            if items:
                more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:8])}{more}")
        raise CheckpointError(
            w_path,
            "weights do not match config.json (another configuration?): " + "; ".join(parts),
        )
    return added


def _grow_rows(state: dict[str, Tensor], expected: Mapping[str, Tensor]) -> list[str]:
    """Extend each tensor of ``state`` that has fewer rows (first dimension) than the model's,
    and otherwise its shape, with the model's fresh rows after its own; the keys grown."""
    grown = []
    for key, fresh in expected.items():
        old = state.get(key)
        if (
            old is not None
            and old.dim() == fresh.dim() >= 1
            and old.shape[1:] == fresh.shape[1:]
            and old.shape[0] < fresh.shape[0]
        ):
            state[key] = torch.cat([old, fresh[old.shape[0] :].to(old.dtype)])
            grown.append(key)
    return grown
