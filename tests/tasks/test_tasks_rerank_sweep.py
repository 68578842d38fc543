"""`benchmarks/rerank_sweep.py`: its table equals what `evaluate_retrieval` re-ranks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.graph.cache import load_graph_dataset
from neurogshn.model.gshn import GSHN
from neurogshn.tasks.retrieval import evaluate_retrieval

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "rerank_sweep.py"
_spec = importlib.util.spec_from_file_location("neurogshn_bench_rerank_sweep", _PATH)
rerank_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rerank_sweep)


def _sweep_and_evaluate(scenes_root, tiny_checkpoint, out, extra):
    """Run the script on the fixture's test split; return its table and an ``evaluate_retrieval``
    on the same model and data (keyword arguments passed through)."""
    argv = ["--checkpoint", str(tiny_checkpoint), "--data", str(scenes_root), "--split", "test"]
    assert rerank_sweep.main([*argv, "--max-k", "6", *extra, "--json", str(out)]) == 0
    model = GSHN.from_pretrained(tiny_checkpoint)
    graphs = load_graph_dataset(scenes_root, "test", progress=False)
    coco = CocoPanopticDataset(scenes_root, "test")
    return json.loads(out.read_text()), lambda **kw: evaluate_retrieval(model, graphs, coco, **kw)


def test_sweep_matches_evaluate_for_every_k(scenes_root, tiny_checkpoint, tmp_path, capsys):
    extra = ["--weights", "0,0.5", "--threads", "1"]
    table, evaluate = _sweep_and_evaluate(scenes_root, tiny_checkpoint, tmp_path / "s.json", extra)
    assert set(table) == {f"K={k},w={w}" for k in (4, 6) for w in ("0", "0.5")}
    for k in (4, 6):
        direct = evaluate(rerank=k)  # w = 0.5
        for key in ("i2t_R@1", "t2i_R@1"):
            assert table[f"K={k},w=0.5"][key] == pytest.approx(direct[key]), (k, key)
        direct = evaluate(rerank=k, itc_weight=0.0)
        assert direct["itc_weight"] == 0.0
        for key in ("i2t_R@1", "t2i_R@1"):
            assert table[f"K={k},w=0"][key] == pytest.approx(direct[key]), (k, key)
    assert "rows K, columns w" in capsys.readouterr().out


def test_sweep_pool_norm_matches_evaluate(scenes_root, tiny_checkpoint, tmp_path, capsys):
    extra = ["--weights", "0.5", "--pool-norms", "1,3"]
    table, evaluate = _sweep_and_evaluate(scenes_root, tiny_checkpoint, tmp_path / "s.json", extra)
    for k in (4, 6):
        for beta in (1, 3):
            direct = evaluate(rerank=k, pool_norm=beta)
            got = table[f"K={k},w=0.5,pool_norm={beta}"]["i2t_R@1"]
            assert got == pytest.approx(direct["i2t_R@1_poolnorm"]), (k, beta)
    table, _ = _sweep_and_evaluate(
        scenes_root, tiny_checkpoint, tmp_path / "s0.json", ["--weights", "0", "--pool-norms", "3"]
    )
    direct = evaluate(rerank=6, pool_norm=3, itc_weight=0.0)
    assert table["K=6,w=0,pool_norm=3"]["i2t_R@1"] == pytest.approx(direct["i2t_R@1_poolnorm"])
    with pytest.raises(ValueError, match="itc_weight"):
        evaluate(rerank=4, itc_weight=-1.0)
    assert "pool normalisation β = 3" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        rerank_sweep.main(
            ["--checkpoint", str(tiny_checkpoint), "--data", str(scenes_root), "--pool-norms=-1"]
        )
    assert "--pool-norms must be >= 0" in capsys.readouterr().err
