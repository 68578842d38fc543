"""`neurogshn finetune` / `neurogshn evaluate` end to end on the generated fixture and on a
COCO-2017-layout copy of it (tests/tasks)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from neurogshn.cli import main


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_evaluate_retrieval_cli(scenes_root, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--task",
            "retrieval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            str(scenes_root),
            "--split",
            "test",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "t2i_R@1" in text and "i2t_R@10" in text
    res = _json(out)
    m = res["metrics"]
    assert res["task"] == "retrieval" and res["split"] == "test"
    assert m["num_images"] == 8 and m["num_captions"] >= 8
    for key in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10"):
        assert 0.0 <= m[key] <= 1.0
    assert m["i2t_R@1"] <= m["i2t_R@5"] <= m["i2t_R@10"]
    assert m["rsum"] == pytest.approx(
        100 * sum(m[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    )
    hn = scenes_root / "annotations" / "hard_negatives_test.json"
    if hn.is_file():
        assert 0.0 <= m["relation_swap_acc"] <= 1.0 and m["relation_swap_n"] > 0
        assert 0.0 <= m["attribute_swap_acc"] <= 1.0
    # what the captions allow (the fixture is in the benchmark's vocabulary): the oracle by
    # hand from the generator's own scene facts, and true@1 never below R@1
    from neurogshn.data.relational.logic import evaluate
    from neurogshn.data.relational.scenes import make_scene

    manifest = _json(scenes_root / "annotations" / "scenes.json")
    facts = [
        make_scene(manifest["seed"], "test", i, manifest["image_size"]).facts
        for i in range(manifest["splits"]["test"])
    ]
    caps = _json(scenes_root / "annotations" / "captions_test.json")["annotations"]
    forms = _json(scenes_root / "annotations" / "logical_forms_test.json")["forms"]
    k_c = [sum(evaluate(forms[a["caption"]], f) for f in facts) for a in caps]
    assert m["t2i_R@1_oracle"] == pytest.approx(sum(1 / k for k in k_c) / len(k_c))
    assert m["ambiguous_caption_frac"] == pytest.approx(sum(k > 1 for k in k_c) / len(k_c))
    assert m["own_false"] == 0
    for d in ("i2t", "t2i"):
        assert m[f"{d}_R@1"] <= m[f"{d}_true@1"] <= 1.0
        assert m[f"{d}_R@1_itc"] <= m[f"{d}_true@1_itc"] <= 1.0
    assert "i2t_true@1" in text and any("*_oracle" in n for n in res["notes"])
    for d in ("i2t", "t2i"):  # every miss of true@1 has one reason
        reasons = [v for k, v in m.items() if k.startswith(f"{d}_false@1_")]
        assert len(reasons) >= 8 and m[f"{d}_true@1"] + sum(reasons) == pytest.approx(1.0)
    # the same as calling the library directly
    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.data.diagnostics import diagnostics_for
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.model.gshn import GSHN
    from neurogshn.tasks.retrieval import evaluate_retrieval

    coco = CocoPanopticDataset(scenes_root, "test")
    direct = evaluate_retrieval(
        GSHN.from_pretrained(tiny_checkpoint),
        load_graph_dataset(scenes_root, "test", progress=False),
        coco,
        hard_negatives=hn if hn.is_file() else None,
        rerank=16,
        diagnostics=diagnostics_for(scenes_root, "test", dataset=coco),
    )
    # the checkpoint has an ITM head: R@K re-ranked by default, the cosine figures kept
    assert m["rerank_k"] == 16 and "i2t_R@1_itc" in m
    for key in ("t2i_R@1", "i2t_R@5", "t2i_R@1_itc", "i2t_R@1_itc", "rsum_itc", "t2i_true@1"):
        assert direct[key] == pytest.approx(m[key]), key
    for key in ("i2t_true@1_itc", "i2t_R@1_oracle", "i2t_R@5_oracle_specific", "rsum_oracle"):
        assert direct[key] == pytest.approx(m[key]), key
    # without its false pairs a ranking can only do better, and no better than every hit
    for d in ("i2t", "t2i"):
        assert m[f"{d}_R@1"] <= m[f"{d}_R@1_given_truth"] <= 1.0


def _coco2017_copy(src: Path, dst: Path, split: str = "test", coco_split: str = "val") -> Path:
    """The fixture's split laid out like COCO 2017 as a user downloads it."""
    ann = dst / "annotations"
    ann.mkdir(parents=True)
    shutil.copytree(src / "images" / split, dst / f"{coco_split}2017")
    shutil.copytree(src / f"panoptic_{split}", ann / f"panoptic_{coco_split}2017")
    shutil.copy(
        src / "annotations" / f"panoptic_{split}.json", ann / f"panoptic_{coco_split}2017.json"
    )
    shutil.copy(
        src / "annotations" / f"captions_{split}.json", ann / f"captions_{coco_split}2017.json"
    )
    return dst


def test_evaluate_retrieval_pool_norm_cli(scenes_root, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "pn.json"
    args = ["evaluate", "--task", "retrieval", "--checkpoint", str(tiny_checkpoint)]
    args += ["--data", str(scenes_root), "--split", "test", "--no-progress"]
    assert main([*args, "--no-hard-negatives", "--pool-norm", "2", "--json", str(out)]) == 0
    res = _json(out)
    m = res["metrics"]
    assert m["pool_norm"] == 2.0 and m["rerank_k"] == 16
    assert m["i2t_R@1_poolnorm"] <= m["i2t_R@5_poolnorm"] <= m["i2t_R@10_poolnorm"]
    assert m["i2t_R@1_poolnorm"] <= m["i2t_true@1_poolnorm"] <= 1.0
    assert any("transductive" in n for n in res["notes"])
    assert m["itc_weight"] == 0.5 and any("ITM + 0.5 x ITC" in n for n in res["notes"])
    capsys.readouterr()
    assert main([*args, "--rerank", "0", "--pool-norm", "2"]) == 2
    assert "--pool-norm 2" in capsys.readouterr().err
    assert main([*args, "--no-hard-negatives", "--itc-weight", "0.25", "--json", str(out)]) == 0
    res = _json(out)
    assert res["metrics"]["itc_weight"] == 0.25
    assert any("ITM + 0.25 x ITC" in n for n in res["notes"])
    capsys.readouterr()
    assert main([*args, "--itc-weight", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--itc-weight" in err and "'-1' is not a number >= 0" in err


def test_evaluate_retrieval_on_coco2017_layout(scenes_root, tiny_checkpoint, tmp_path, capsys):
    coco = _coco2017_copy(scenes_root, tmp_path / "coco")
    out_coco, out_ours = tmp_path / "coco.json", tmp_path / "ours.json"
    assert (
        main(
            [
                "evaluate",
                "--task",
                "retrieval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                str(coco),
                "--split",
                "val",
                "--json",
                str(out_coco),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "hard-negative diagnostics omitted" in text
    res = _json(out_coco)
    assert "relation_swap_acc" not in res["metrics"]
    assert any("hard-negative diagnostics omitted" in n for n in res["notes"])
    # same images, same graphs -> the same figures as on the original layout
    assert (
        main(
            [
                "evaluate",
                "--task",
                "retrieval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                str(scenes_root),
                "--split",
                "test",
                "--no-hard-negatives",
                "--no-oracle",
                "--json",
                str(out_ours),
                "--no-progress",
            ]
        )
        == 0
    )
    ours_res = _json(out_ours)
    ours = ours_res["metrics"]
    for key in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@10", "num_images", "num_captions"):
        assert res["metrics"][key] == pytest.approx(ours[key]), key
    # the COCO-layout copy declares no benchmark: no oracle, and no note about one
    assert not any("oracle" in k or "true@1" in k for k in res["metrics"])
    assert not any("oracle" in n for n in res["notes"])
    assert "t2i_R@1_oracle" not in ours and "i2t_true@1" not in ours
    assert any("oracle omitted (not requested)" in n for n in ours_res["notes"])


@pytest.mark.parametrize("task", ["vqa", "ve", "nlvr2"])
def test_finetune_then_evaluate(task, scenes_root, tiny_checkpoint, tmp_path, capsys):
    if not (scenes_root / "annotations" / f"{task}_train.json").is_file():
        pytest.skip(f"the fixture has no {task} task file")
    out = tmp_path / f"ft_{task}"
    assert (
        main(
            [
                "finetune",
                "--task",
                task,
                "--from",
                str(tiny_checkpoint),
                "--data",
                str(scenes_root),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "task_head.safetensors",
        "task.json",
    }
    meta = _json(out / "task.json")
    assert meta["task"] == task and len(meta["history"]) == 1
    # no --backbone-lr: the task's default (NLVR2's is lower: a faster rate erased the evidence)
    assert meta["finetune"]["backbone_lr"] == {"vqa": 1e-4, "ve": 1e-4, "nlvr2": 2e-5}[task]
    # default head: soft counts, and the checkpoint's ITM evidence (it has an ITM head)
    assert meta["head"]["count_heads"] == 8 and meta["head"]["evidence_dim"] > 0
    res_path = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--task",
                task,
                "--checkpoint",
                str(out),
                "--data",
                str(scenes_root),
                "--split",
                "test",
                "--json",
                str(res_path),
                "--no-progress",
            ]
        )
        == 0
    )
    m = _json(res_path)["metrics"]
    acc = m[f"{task}_acc"]
    assert 0.0 <= acc <= 1.0 and not math.isnan(acc)
    if task == "vqa":
        assert any(k.startswith("vqa_acc_") for k in m)
    if task == "nlvr2":  # per statement form, from the items' "type"
        forms = {"both", "exactly_one", "neither", "left", "right", "compare"}
        assert {k.removeprefix("nlvr2_acc_") for k in m if k.startswith("nlvr2_acc_")} & forms
        assert "nlvr2_form_prior_acc" in m
    # a task checkpoint's backbone still serves retrieval
    assert (
        main(
            [
                "evaluate",
                "--task",
                "retrieval",
                "--checkpoint",
                str(out),
                "--data",
                str(scenes_root),
                "--split",
                "test",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    # the wrong task is a clean error
    other = "ve" if task != "ve" else "vqa"
    assert (
        main(
            [
                "evaluate",
                "--task",
                other,
                "--checkpoint",
                str(out),
                "--data",
                str(scenes_root),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "fine-tuned for" in capsys.readouterr().err


def test_task_eval_needs_task_checkpoint(scenes_root, tiny_checkpoint, capsys):
    rc = main(
        [
            "evaluate",
            "--task",
            "vqa",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            str(scenes_root),
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "task.json" in capsys.readouterr().err


def test_corrupt_head_weights(scenes_root, tiny_checkpoint, tmp_path):
    from neurogshn.errors import CheckpointError
    from neurogshn.model.gshn import GSHN
    from neurogshn.tasks.finetune import build_task_model
    from neurogshn.tasks.task_checkpoint import load_task_checkpoint, save_task_checkpoint

    model = build_task_model(
        GSHN.from_pretrained(tiny_checkpoint), "ve", ["entailment", "neutral", "contradiction"]
    )
    out = save_task_checkpoint(model, tmp_path / "ve")
    loaded, meta = load_task_checkpoint(out)
    assert loaded.config.task == "ve"
    assert meta["head"]["labels"] == ["entailment", "neutral", "contradiction"]
    (out / "task_head.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match=r"task_head\.safetensors"):
        load_task_checkpoint(out)


def test_finetune_head_options_from_the_command_line():
    from neurogshn.cli import build_parser
    from neurogshn.cli.finetune import _head_options

    base = ["finetune", "--task", "vqa", "--from", "c", "--data", "d"]
    parse = build_parser().parse_args
    assert _head_options(parse(base)) == {"fusion": "cross", "evidence": "auto", "count_heads": 8}
    assert _head_options(
        parse([*base, "--head-init", "itm", "--no-head-evidence", "--head-counts", "0"])
    ) == {"fusion": "blip", "init": "itm", "evidence": False, "count_heads": 0}
    assert (
        _head_options(parse([*base, "--head-evidence", "--head-layers", "2"]))["evidence"] is True
    )
