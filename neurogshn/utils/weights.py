"""Model directories a user points us at must hold safetensors weights: a pickle
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) can run code when loaded, so it is never read."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from neurogshn.errors import InputFileError

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
