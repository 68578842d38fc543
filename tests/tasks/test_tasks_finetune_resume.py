"""Fine-tuning resume: a run stopped mid-epoch (an exception from the step callback, like a
kill after the newest state was written) and resumed equals an uninterrupted run bit for bit;
corrupt states, other configurations and occupied output directories are refused clearly
(tests/tasks)."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from neurogshn.cli import main
from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.tasks.finetune import build_task_model, finetune
from neurogshn.tasks.finetune_config import FinetuneConfig
from neurogshn.tasks.finetune_state import RESUME_DIR, read_finetune_state
from neurogshn.tasks.task_checkpoint import load_task_checkpoint
from neurogshn.tasks.task_data import TaskExample, filter_examples, load_task_examples

# 40 examples, batch 8: 5 steps per epoch, 10 in all; states after global steps 3, 5 (end of
# epoch 1), 6 and 9 (end of epoch 2: 10). The interrupted run stops after step 8, so the
# resumed one redoes steps 7 and 8 from the state of step 6 (epoch 2, step 1).
CFG = FinetuneConfig(epochs=2, batch_size=8, lr=1e-3, backbone_lr=1e-3, checkpoint_every=3)
STOP_AT = 8


class Interrupt(Exception):
    """Stands in for a kill: raised after a step, past the newest written state."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Resume is bit-exact with one intra-op thread (as the pretraining resume test runs, via
    OMP_NUM_THREADS=1). Measured with two threads: two uninterrupted runs are identical, but a
    resumed run differs in the last bits (most likely because the text memo is empty after a
    resume, so frozen text states are recomputed in other batch shapes, and multi-threaded
    matmul rounding depends on the shape)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(scenes_root, tmp_path_factory):
    """An untrained gshn-tiny checkpoint, the VQA training examples and their graphs."""
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.graph.config import graph_getter
    from neurogshn.model.gshn import GSHN

    if not (scenes_root / "annotations" / "vqa_train.json").is_file():
        pytest.skip("the fixture has no VQA task file")
    graphs = load_graph_dataset(scenes_root, "train", progress=False)
    torch.manual_seed(0)
    model = GSHN.from_config_name(
        "gshn-tiny", node_features=graphs.feature_dim, edge_features=graphs.edge_dim
    )
    ckpt = model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "final")
    labels, examples, _ = load_task_examples(scenes_root, "vqa", "train")
    get_graph, has_graph = graph_getter(graphs)
    examples, _ = filter_examples(examples, has_graph)
    assert len(examples) >= 40
    return {"ckpt": ckpt, "labels": labels, "train": examples[:40], "get": get_graph}


def _model(setup, seed: int):
    """A fresh task model (head initialised from ``seed``; dropout 0.1 uses the torch RNG)."""
    from neurogshn.model.gshn import GSHN

    torch.manual_seed(seed)
    return build_task_model(GSHN.from_pretrained(setup["ckpt"]), "vqa", setup["labels"])


def _run(setup, out, cfg=CFG, seed=0, model=None, **kw):
    return finetune(
        model if model is not None else _model(setup, seed),
        setup["train"],
        setup["get"],
        cfg,
        out_dir=out,
        val_examples=setup["train"][:8],
        progress=False,
        log=lambda s: None,
        **kw,
    )


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ft"
    return out, _run(setup, out)


@pytest.fixture(scope="module")
def interrupted(setup, tmp_path_factory) -> Path:
    """The output of a run stopped after step 8 (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("int") / "ft"
    seen = []

    def stop(info):
        seen.append(info)
        if info["global_step"] == STOP_AT:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(setup, out, callback=stop)
    assert [i["global_step"] for i in seen] == list(range(1, STOP_AT + 1))
    assert [i["global_step"] for i in seen if i["saved"]] == [3, 6]
    assert seen[5]["saved"] == out / RESUME_DIR and (seen[5]["epoch"], seen[5]["step"]) == (2, 1)
    return out


def _copy(src: Path, dst: Path, resume_only: bool = False) -> Path:
    if resume_only:  # the mid-epoch state alone (small: no end-of-epoch backbone copy)
        shutil.copytree(src / RESUME_DIR, dst / RESUME_DIR)
    else:
        shutil.copytree(src, dst)
    return dst


def _same_history(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x["epoch"], x["loss"], x["train_acc"], x["val"]) == (
            y["epoch"],
            y["loss"],
            y["train_acc"],
            y["val"],
        )


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, differ[:5]


@pytest.mark.parametrize("where", ["mid-epoch", "epoch-end"])
def test_resume_is_bit_exact(setup, reference, interrupted, tmp_path, where):
    ref_dir, ref = reference
    out = _copy(interrupted, tmp_path / "ft")
    # what the kill left: epoch 1's complete checkpoint + the state of global step 6
    assert len(json.loads((out / "task.json").read_text())["history"]) == 1
    state = read_finetune_state(out / RESUME_DIR)
    assert (state.epoch, state.step, state.trainer["global_step"]) == (1, 1, 6)
    if where == "epoch-end":  # lose the mid-epoch state: resume from the end of epoch 1
        shutil.rmtree(out / RESUME_DIR)
    # another head initialisation and scrambled RNGs: all of it must come from the state
    random.seed(123)
    model = _model(setup, seed=7)
    torch.manual_seed(123)
    res = _run(setup, out, model=model, resume=True)
    assert res["resumed_from"] == (out / RESUME_DIR if where == "mid-epoch" else out)
    _same_history(res["history"], ref["history"])
    ref_model, ref_meta = load_task_checkpoint(ref_dir)
    _same_weights(model, ref_model)
    loaded, meta = load_task_checkpoint(out)
    _same_weights(loaded, ref_model)
    _same_history(meta["history"], ref_meta["history"])
    assert not (out / RESUME_DIR).exists()  # the end-of-epoch rewrite drops it
    final = read_finetune_state(out)
    assert (final.epoch, final.step) == (2, 0)
    # resuming a finished run with the same epochs does nothing and reports its history
    again = _run(setup, out, resume=True)
    _same_history(again["history"], ref["history"])


def test_resume_checks_the_configuration(setup, interrupted, tmp_path):
    out = _copy(interrupted, tmp_path / "ft", resume_only=True)
    with pytest.raises(CheckpointError, match=r"trainer\.json") as err:
        _run(setup, out, cfg=replace(CFG, lr=2e-3, batch_size=4), resume=True)
    assert "lr: checkpoint 0.001, now 0.002" in str(err.value)
    assert "batch_size: checkpoint 8, now 4" in str(err.value)
    with pytest.raises(CheckpointError, match="epochs can only be extended"):
        _run(setup, out, cfg=replace(CFG, epochs=1), resume=True)
    with pytest.raises(CheckpointError, match="training examples: checkpoint 40, now 39"):
        finetune(
            _model(setup, 0),
            setup["train"][:39],
            setup["get"],
            CFG,
            out_dir=out,
            progress=False,
            log=lambda s: None,
            resume=True,
        )
    from neurogshn.model.gshn import GSHN

    other = build_task_model(GSHN.from_pretrained(setup["ckpt"]), "vqa", setup["labels"][::-1])
    with pytest.raises(CheckpointError, match=r"head\.labels: .*first difference at \[0\]"):
        _run(setup, out, model=other, resume=True)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("training_state.safetensors", "truncate", "truncated or altered"),
        ("task_head.safetensors", "flip", "SHA-256"),
        ("model.safetensors", "flip", "SHA-256"),
        ("trainer.json", "truncate", "not valid JSON"),
    ],
)
def test_corrupt_state_names_the_file(setup, interrupted, tmp_path, name, damage, message):
    out = _copy(interrupted, tmp_path / "ft", resume_only=True)
    path = out / RESUME_DIR / name
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=message) as err:
        _run(setup, out, resume=True)
    assert err.value.path == str(path)


# -- output directory rules, on the small stand-in backbone (tests/tasks/conftest.py) ----------
def _tiny_run(backbone, out, **kw):
    from torch_geometric.data import Data

    graphs = {
        i: Data(x=torch.eye(4)[[i % 4, (i + 1) % 4]], edge_index=torch.tensor([[0, 1], [1, 0]]))
        for i in range(8)
    }
    ex = [TaskExample(i, (i,), "what color", i % 2) for i in range(8)]
    model = build_task_model(backbone, "vqa", ["a", "b"], {"heads": 2})
    cfg = FinetuneConfig(epochs=1, batch_size=4, checkpoint_every=1)
    return finetune(model, ex, graphs.__getitem__, cfg, out_dir=out, progress=False, **kw)


def test_output_directory_rules(tiny_backbone, tmp_path):
    out = tmp_path / "ft"
    logs: list[str] = []
    _tiny_run(tiny_backbone, out, resume=True, log=logs.append)  # nothing there: fresh
    assert any("starting fresh" in line for line in logs)
    assert (out / "trainer.json").is_file()
    with pytest.raises(ConfigError, match="pass --resume to continue it, --overwrite"):
        _tiny_run(tiny_backbone, out, log=lambda s: None)
    _tiny_run(tiny_backbone, out, overwrite=True, log=logs.append)
    assert any("discarded" in line for line in logs)
    # a directory that is not a fine-tuning output is never replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        _tiny_run(tiny_backbone, foreign, log=lambda s: None)
    with pytest.raises(ConfigError, match="refusing to replace it, even with --overwrite"):
        _tiny_run(tiny_backbone, foreign, overwrite=True, log=lambda s: None)
    with pytest.raises(ConfigError, match="no fine-tuning resume state"):
        _tiny_run(tiny_backbone, foreign, resume=True, log=lambda s: None)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # the leftover of a write killed before any state was complete does not block a new run
    leftover = tmp_path / "killed"
    (leftover / ".resume.x1y2.tmp" / "resume").mkdir(parents=True)
    _tiny_run(tiny_backbone, leftover, log=lambda s: None)
    assert (leftover / "trainer.json").is_file()


def test_cli_resume_extends_a_finished_run(scenes_root, setup, tmp_path, capsys):
    """Frozen backbone, states only at epoch ends: 1 epoch + `--resume --epochs 2` equals
    `--epochs 2`; the same command without --resume is refused."""

    def cli(out, epochs, *extra):
        return main(
            [
                "finetune",
                "--task",
                "vqa",
                "--from",
                str(setup["ckpt"]),
                "--data",
                str(scenes_root),
                "--out",
                str(out),
                "--epochs",
                str(epochs),
                "--batch-size",
                "16",
                "--max-train",
                "32",
                "--backbone-lr",
                "0",
                "--val-split",
                "",
                "--checkpoint-every",
                "0",
                "--no-progress",
                *extra,
            ]
        )

    part, full = tmp_path / "part", tmp_path / "full"
    assert cli(part, 1) == 0
    assert not (part / RESUME_DIR).exists()
    capsys.readouterr()
    assert cli(part, 2) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and str(part) in err
    assert cli(part, 2, "--resume", "--overwrite") == 2  # argparse: mutually exclusive
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli(part, 2, "--resume") == 0
    assert "resumed from" in capsys.readouterr().out
    assert cli(full, 2) == 0
    a, meta_a = load_task_checkpoint(part)
    b, meta_b = load_task_checkpoint(full)
    assert [h["loss"] for h in meta_a["history"]] == [h["loss"] for h in meta_b["history"]]
    assert meta_a["finetune"]["epochs"] == 2
    _same_weights(a, b)
