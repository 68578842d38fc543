"""Model directories a user points us at must hold safetensors weights: a pickle
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) can run code when loaded, so it is never read."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from torch import Tensor

from neurogshn.errors import CheckpointError, InputFileError

#: weight files that are pickles (refused) — what a directory holds instead of safetensors
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def require_safetensors(directory: str | PathLike[str], what: str = "model") -> Path:
    """``directory`` as a path, after checking that it holds ``*.safetensors`` weights.

    Raises:
        InputFileError: naming the directory, when it holds no safetensors file (and naming
            the pickle files it holds instead, which are never loaded).
    """
    root = Path(directory)
    if any(root.glob("*.safetensors")):
        return root
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    found = (
        f"; found {', '.join(pickles)}, which are pickles and are never loaded" if pickles else ""
    )
    raise InputFileError(
        root,
        f"{what} directory holds no *.safetensors weights{found} (convert the weights to "
        "safetensors, e.g. save_pretrained(..., safe_serialization=True))",
    )


def read_safetensors(path: str | PathLike[str], missing: str = "missing") -> dict[str, Tensor]:
    """The tensors of a safetensors file, with every failure a :class:`CheckpointError` that
    names the file: absent (``missing`` says from what), a pickle or ``torch.save`` zip (never
    unpickled), truncated or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, missing)
    with open(path, "rb") as fh:
        head = fh.read(16)
    # A safetensors file starts with its header length (u64 little-endian) and then "{"; only
    # when that is absent can the pickle / zip magic be told apart from a length byte (a header
    # of 0x5780 bytes starts with 0x80, like a pickle).
    safetensors_like = len(head) > 8 and head[8:9] == b"{"
    if not safetensors_like and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise CheckpointError(
            path,
            "is a pickle/torch.save file, not safetensors; refusing to unpickle it "
            "(convert it with safetensors.torch.save_file from a trusted environment)",
        )
    if len(head) < 8:
        raise CheckpointError(path, f"truncated: only {len(head)} bytes")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"truncated or corrupt safetensors file: {exc}") from None
