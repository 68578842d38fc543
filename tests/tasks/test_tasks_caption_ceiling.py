"""`benchmarks/caption_ceiling.py`: the Bayes decision by hand and the script end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "caption_ceiling.py"
_spec = importlib.util.spec_from_file_location("neurogshn_bench_caption_ceiling", _PATH)
ceiling = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ceiling
_spec.loader.exec_module(ceiling)


def test_bayes_decision_hand_computed():
    # 2 captions × 2 images, both true of both; caption 0 written 3 of 3 times for image 0
    # and once for image 1, caption 1 never: p = (n + ½) / 4
    counts = np.array([[3.0, 1.0], [0.0, 0.0]])
    truth = np.ones((2, 2), dtype=bool)
    m = ceiling.bayes_recall_at_1(counts, 3, truth, np.array([0, 1]))
    # t2i: caption 0 -> image 0 (own, hit); caption 1 ties both images -> 1/2
    assert m["t2i_R@1_bayes"] == pytest.approx(0.75)
    # i2t: posteriors c0 (0.7, 0.3), c1 (0.5, 0.5): image 0 takes c0, image 1 takes c1
    assert m["i2t_R@1_bayes"] == pytest.approx(1.0)
    # a false pair is never chosen, however often it would be written
    truth[0, 1] = False
    m = ceiling.bayes_recall_at_1(np.array([[0.0, 9.0], [0.0, 0.0]]), 9, truth, np.array([0, 1]))
    assert m["t2i_R@1_bayes"] == pytest.approx(0.75)


def test_script_end_to_end(scenes_root, tmp_path, capsys):
    out = tmp_path / "c.json"
    argv = ["--data", str(scenes_root), "--samples", "8", "--jobs", "1", "--json", str(out)]
    assert ceiling.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 8 and res["captions"] >= 8 and res["samples"] == 8
    for key in ("i2t_R@1_bayes", "t2i_R@1_bayes", "t2i_R@1_oracle", "i2t_R@1_oracle_specific"):
        assert 0.0 < res[key] <= 1.0, key
    assert set(res["bayes_at_8_samples"]) == {"i2t_R@1_bayes", "t2i_R@1_bayes"}
    assert "bayes_at_2_samples" in res and "bayes_at_4_samples" in res
    assert "perfect reader, random order" in capsys.readouterr().out


def test_shared_caption_text_is_counted_for_every_copy():
    """Two pool captions with the same content (two images described alike, in any wording)
    both get counts."""
    from neurogshn.data.relational.captions import make_captions
    from neurogshn.data.relational.logic import SceneFacts, SceneObject

    facts = SceneFacts(
        (
            SceneObject(1, "circle", "red", "small", 0.2, 0.5),
            SceneObject(2, "square", "blue", "large", 0.8, 0.5),
        )
    )
    forms = {s.canonical() for s in make_captions(facts, np.random.default_rng(0), 5)}
    ceiling._init([facts], {t: [2 * k, 2 * k + 1] for k, t in enumerate(sorted(forms))})
    _, rows = ceiling._sample_counts((0, 8, 7))
    counts = dict(rows)
    assert counts and all(v[-1] > 0 for v in counts.values())
    assert all(counts.get(2 * k) == counts.get(2 * k + 1) for k in range(len(forms)))
