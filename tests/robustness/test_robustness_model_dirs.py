"""A text-model or segmenter directory that holds a pickle instead of safetensors weights is
refused before transformers or torch open it, with a message naming the directory."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from neurogshn.errors import InputFileError
from neurogshn.model.text import TextEncoder, default_text_model_path
from neurogshn.utils.weights import require_safetensors


class _Payload:
    """Unpickling this would create a marker file: the test checks that it never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def pickled_text_model(tmp_path):
    """The shipped MiniLM directory with its safetensors weights replaced by a pickle."""
    src = Path(default_text_model_path())
    out = tmp_path / "text_model"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors"))
    marker = tmp_path / "payload-ran"
    (out / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    return out, marker


def test_text_model_dir_with_a_pickle_is_refused_by_name(pickled_text_model):
    directory, marker = pickled_text_model
    with pytest.raises(InputFileError) as exc:
        TextEncoder(embed_dim=32, model_path=str(directory))
    message = str(exc.value)
    assert str(directory) in message
    assert "pytorch_model.bin" in message and "safetensors" in message
    assert not marker.exists()


def test_segmenter_dir_with_a_pickle_is_refused_by_name(tmp_path):
    from neurogshn.segmentation.hf import TransformersSegmenter

    directory = tmp_path / "segmenter"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    marker = tmp_path / "payload-ran"
    (directory / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(InputFileError) as exc:
        TransformersSegmenter(directory, device="cpu")
    assert str(directory) in str(exc.value) and "pytorch_model.bin" in str(exc.value)
    assert not marker.exists()


def test_a_directory_with_safetensors_passes(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert require_safetensors(tmp_path) == tmp_path
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(InputFileError, match=r"no \*\.safetensors"):
        require_safetensors(tmp_path)
