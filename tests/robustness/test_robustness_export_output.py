"""Export output folders: a file in the way, an impossible path or a refused network end in an
ExportError that names the path, and a refused export leaves no folder behind."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardware"))
from hw_fixtures import make_encoder, node_inputs

from neurogshn.errors import ExportError
from neurogshn.hardware.export import export_lava, export_nir


@pytest.fixture
def branch():
    return SimpleNamespace(encoder=make_encoder(), source="test")


@pytest.mark.parametrize("export", [export_lava, export_nir], ids=["netx", "nir"])
def test_output_onto_a_file_is_refused_by_name(export, branch, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    with pytest.raises(ExportError, match="a_file: exists and is not a directory"):
        export(branch, target)
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("export", [export_lava, export_nir], ids=["netx", "nir"])
def test_output_below_a_file_is_refused_by_name(export, branch, tmp_path):
    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(ExportError, match="cannot create the export folder"):
        export(branch, tmp_path / "a_file" / "out")


def test_a_refused_network_leaves_no_folder(branch, tmp_path):
    out = tmp_path / "new" / "export"
    with pytest.raises(ExportError, match="outside Loihi's 8-bit range"):
        export_lava(branch, out, calibration_inputs=node_inputs(), weight_scale=1e6)
    assert not out.exists()


def test_a_good_export_still_writes_its_files(branch, tmp_path):
    res = export_lava(branch, tmp_path / "ok", calibration_inputs=node_inputs())
    assert res.net_path.is_file() and res.sidecar_path.is_file()


@pytest.mark.parametrize("export", [export_lava, export_nir], ids=["netx", "nir"])
def test_an_unwritable_folder_is_refused_by_name(export, branch, tmp_path, monkeypatch):
    """The suite runs as root, where permissions do not bind: the access check is exercised by
    making ``os.access`` answer as it would for a read-only folder, only for that folder."""
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("keep me")
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ExportError, match="locked: the export folder is not writable"):
        export(branch, locked)
    assert sorted(p.name for p in locked.iterdir()) == ["keep.txt"]
