"""Where the exported spiking encoder comes from: a GSHN checkpoint or an encoder checkpoint.

A :class:`SpikingBranch` is the spiking encoder plus whatever host-side computation turns a
graph's node features into the encoder's input (in GSHN: the input normalisation/projection
that precedes the spiking branch). Two checkpoint kinds are accepted:

* a GSHN checkpoint directory (``config.json`` + ``model.safetensors``), loaded with
  ``neurogshn.model.gshn.GSHN.from_pretrained``; the branch is ``model.spiking_encoder`` and the
  host input is ``model.spiking_inputs(batch)`` when the model provides it;
* a stand-alone encoder checkpoint written by :func:`save_encoder_checkpoint`
  (``config.json`` with ``"kind": "spiking_encoder"`` + ``model.safetensors``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurogshn.errors import CheckpointError
from neurogshn.utils.io import write_json_atomic
from neurogshn.utils.weights import read_safetensors

ENCODER_KIND = "spiking_encoder"


@dataclass
class SpikingBranch:
    """The exportable spiking encoder and the host computation that feeds it.

    Attributes:
        encoder: the :class:`~neurogshn.model.spiking.SpikingEncoder`.
        host_inputs: maps a PyG batch (or a node-feature tensor) to the encoder input
            ``N×F``; ``None`` means the node features ``batch.x`` enter directly.
        model: the full GSHN model when loaded from a GSHN checkpoint (used downstream).
        source: the checkpoint path.
    """

    encoder: Any
    host_inputs: Callable[[Any], Any] | None = None
    model: Any = None
    source: str = ""

    def encoder_inputs(self, batch: Any) -> Any:
        """Encoder input ``N×F`` for a batch of graphs (or a feature tensor)."""
        import torch

        if self.host_inputs is not None:
            with torch.no_grad():
                return self.host_inputs(batch)
        return batch.x if hasattr(batch, "x") else batch


def save_encoder_checkpoint(encoder: Any, directory: str | Path) -> Path:
    """Save a stand-alone spiking-encoder checkpoint (``config.json`` + ``model.safetensors``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "kind": ENCODER_KIND,
        "in_features": encoder.in_features,
        "hidden_features": list(encoder.hidden_features),
        "time_steps": encoder.time_steps,
        "neuron": encoder.neuron.to_dict(),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    write_json_atomic(directory / "config.json", config)
    return directory


def _load_encoder_checkpoint(directory: Path, config: dict[str, Any]) -> SpikingBranch:

    from neurogshn.model.spiking import LIFNeuronParameters, SpikingEncoder

    cfg_path = directory / "config.json"
    try:
        neuron = LIFNeuronParameters(**config["neuron"])
        encoder = SpikingEncoder(
            int(config["in_features"]),
            tuple(config["hidden_features"]),
            int(config["time_steps"]),
            neuron,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(cfg_path, f"invalid spiking-encoder config ({exc})") from exc
    weights = directory / "model.safetensors"
    state = read_safetensors(weights)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(weights, f"does not match config.json ({exc})") from exc
    return SpikingBranch(encoder.eval(), None, None, str(directory))


def load_spiking_branch(checkpoint: str | Path, device: str | None = "cpu") -> SpikingBranch:
    """Load the spiking branch from a GSHN or stand-alone encoder checkpoint directory.

    Raises:
        CheckpointError: missing/invalid files, or a GSHN model without a spiking branch.
    """
    directory = Path(checkpoint)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(directory, "not a checkpoint directory (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(cfg_path, f"unreadable JSON ({exc})") from exc
    if isinstance(config, dict) and config.get("kind") == ENCODER_KIND:
        return _load_encoder_checkpoint(directory, config)
    try:
        from neurogshn.model.gshn import GSHN
    except ImportError as exc:
        raise CheckpointError(
            directory, f"GSHN checkpoints need neurogshn.model.gshn ({exc})"
        ) from exc
    model = GSHN.from_pretrained(directory, device=device).eval()
    encoder = getattr(model, "spiking_encoder", None)
    if encoder is None:
        raise CheckpointError(
            directory, "this GSHN model has no spiking branch (mode 'gat_only'): nothing to export"
        )
    host = getattr(model, "spiking_inputs", None)
    return SpikingBranch(encoder.eval(), host, model, str(directory))
