"""The example notebooks: committed without outputs, and each runs top to bottom.

Each notebook is executed with nbclient in a fresh kernel of *this* interpreter (a temporary
kernelspec whose argv is ``sys.executable``, so the test never picks up another Python), in a
temporary working directory, offline (``HF_HUB_OFFLINE=1``) and with the Agg backend.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "examples" / "notebooks"
NOTEBOOKS = ("01_spike_rasters.ipynb", "02_scene_graphs.ipynb", "03_export_and_energy.ipynb")
KERNEL = "neurogshn-test-python"
#: Per-cell limit; a whole notebook takes well under a minute on one core.
CELL_TIMEOUT_S = 300


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def test_notebooks_are_present_and_generated() -> None:
    present = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert present == sorted(NOTEBOOKS)
    assert (NOTEBOOK_DIR / "_build_notebooks.py").is_file()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"{name}: code cell {i} has outputs committed"
        assert cell.get("execution_count") is None, f"{name}: code cell {i} has a count"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A kernelspec for the running interpreter, found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "neurogshn test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return {"JUPYTER_PATH": str(root)}


def execute(
    name: str, workdir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    """Run a notebook in ``workdir``; returns it with its outputs."""
    from jupyter_client.kernelspec import KernelSpecManager

    for key, value in {**env, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(workdir))  # the notebooks' tempfile.mkdtemp() lands here
    ksm = KernelSpecManager()
    assert ksm.get_kernel_spec(KERNEL).argv[0] == sys.executable
    nb = _read(name)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{name} code cell {i}: {errors[0].ename}: {errors[0].evalue}"
    return nb


def _text(outputs: list) -> str:
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "".join(parts)


def _pngs(outputs: list) -> int:
    return sum(1 for out in outputs if "data" in out and "image/png" in out.data)


def _cell(nb: nbformat.NotebookNode, needle: str) -> list:
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell containing {needle!r}"
    return cells[0].outputs


def test_spike_raster_notebook(
    kernel_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = NOTEBOOKS[0]
    nb = execute(name, tmp_path, kernel_env, monkeypatch)
    assert _pngs(_cell(nb, "plot_image_summary(")) == 1
    assert _pngs(_cell(nb, "plot_node_raster(")) == 1
    assert _pngs(_cell(nb, "plot_rate_histogram(")) == 2
    assert _pngs(_cell(nb, "plot_membrane_traces(")) == 1
    summary = _text(_cell(nb, "run_pretraining("))
    assert "image→text R@1" in summary and "untrained" in summary
    pair = _text(_cell(nb, "relation_swap"))
    assert "true caption" in pair and "relation swap" in pair and "ITC similarity" in pair
    assert "relation-swapped pairs" in pair
    codes = _cell(nb, "stl_projector")
    assert _pngs(codes) == 1 and "STL image-level similarity" in _text(codes)


def test_scene_graph_notebook(
    kernel_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = NOTEBOOKS[1]
    nb = execute(name, tmp_path, kernel_env, monkeypatch)
    assert "1 global +" in _text(_cell(nb, "segment_record("))
    assert _pngs(_cell(nb, "caption=record.captions[0]")) == 1
    node_sets = _cell(nb, '("patches"')
    assert _pngs(node_sets) == 2
    assert "patches: 16 nodes + global" in _text(node_sets)
    photos = _cell(nb, "skimage.data")
    assert _pngs(photos) == 3
    text = _text(photos)
    assert all(
        f"{n}: " in text and "superpixels" in text for n in ("astronaut", "coffee", "chelsea")
    )
    assert "nodes per image in the batch" in _text(_cell(nb, "DataLoader("))


def test_export_notebook(
    kernel_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = NOTEBOOKS[2]
    nb = execute(name, tmp_path, kernel_env, monkeypatch)
    exported = _text(_cell(nb, "export_lava("))
    assert "spiking_encoder.net" in exported and "stays on the host" in exported
    verified = _text(_cell(nb, "verify_export("))
    assert "agreement = 100% (0 mismatching spikes)" in verified
    assert "Loihi2SimCfg(select_tag='fixed_pt')" in verified
    energy = _text(_cell(nb, "energy_report("))
    assert "snn_loihi1" in energy and "µJ" in energy
    assert _pngs(_cell(nb, "plot_energy(")) == 1
