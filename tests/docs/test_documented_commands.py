"""Every command in README.md and the user guides works as written.

Commands are the lines of ``bash``/``sh`` (or unlabelled) code blocks that start with
``neurogshn``, ``python examples/…``, ``python hardware/…`` or ``python -m neurogshn.cli``
(``\\`` continuations joined, ``# comments`` dropped); ``text`` blocks are transcripts and
synopses, not commands. Each command must parse, name files that exist and, for training
commands, configuration keys that exist. Then every command runs, in document order, in one
working directory laid out as after ``make pretrain`` (``data/scenes``: the tiny generated
scenes; ``runs/pretrain_stl/latest/final``: a gshn-tiny pretrained there by ``neurogshn
pretrain``), with only sizes and paths substituted (image and step counts, the tiny config).
Left out: the full recipe (it trains for hours; its ``--dry-run`` runs) and docs/results.md
(a lab record, not a guide).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDES = [
    REPO / "README.md",
    *sorted(
        p
        for p in (REPO / "docs").glob("*.md")
        if p.name != "results.md" and not p.name.startswith("ablations")
    ),
    REPO / "hardware" / "README.md",
]
_FENCE = re.compile(r"^```(\w*)\s*$")
_START = re.compile(
    r"^(\.venv/bin/)?(neurogshn( |$)|python (-m neurogshn\.cli |examples/|hardware/))"
)
_RUNNABLE_FENCES = {"", "bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class DocCommand:
    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def argv(self) -> list[str]:
        tokens = shlex.split(self.text, comments=True)
        if tokens[0].startswith(".venv/bin/"):
            tokens[0] = tokens[0].removeprefix(".venv/bin/")
        return tokens


def documented_commands() -> list[DocCommand]:
    found = []
    for path in GUIDES:
        in_code, runnable, pending, start = False, False, "", 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fence = _FENCE.match(line.strip())
            if fence:
                in_code = not in_code
                runnable = fence.group(1) in _RUNNABLE_FENCES
                continue
            if not (in_code and runnable):
                continue
            text = line.strip()
            if pending:
                text = f"{pending} {text}"
            elif not _START.match(text):
                continue
            else:
                start = number
            if text.endswith("\\"):
                pending = text[:-1].rstrip()
                continue
            pending = ""
            found.append(DocCommand(path, start, text))
    return found


COMMANDS = documented_commands()


def test_the_guides_document_commands() -> None:
    by_file = {c.path.name for c in COMMANDS}
    assert {"README.md", "hardware.md", "tasks.md", "visualization.md"} <= by_file
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses_and_names_what_exists(command: DocCommand) -> None:
    from neurogshn.cli import build_parser
    from neurogshn.training.config import TrainConfig

    argv = command.argv()
    if argv[0] == "python":
        if argv[1] == "-m":
            argv = ["neurogshn", *argv[3:]]
        else:
            assert (REPO / argv[1]).is_file(), f"{command.where}: no file {argv[1]}"
            return
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        assert exc.code == 0 and "--help" in argv, f"{command.where}: {command.text}"
        return
    if args.command in ("pretrain", "recipe"):
        config = getattr(args, "config", None) or getattr(args, "recipe", None)
        if config is not None:
            assert (REPO / config).is_file(), f"{command.where}: no file {config}"
    if args.command == "pretrain":
        base = TrainConfig.from_json(REPO / (args.config or "configs/pretrain_default.json"))
        base.with_overrides(args.overrides or [])  # unknown or mistyped keys raise


# ------------------------------------------------------------------------------------------
# Running them


def _substituted(command: DocCommand) -> list[str] | None:
    """The command with only sizes and paths changed for the tiny set-up; ``None``: not run."""
    argv = command.argv()
    if argv[0] == "python" and argv[1] != "-m":
        argv = [sys.executable, str(REPO / argv[1]), *argv[2:]]
    elif argv[0] == "python":
        argv = ["neurogshn", *argv[3:]]
    text = " ".join(argv)
    if " recipe " in f" {text} " and "--dry-run" not in argv:
        return None  # the full recipe trains for hours
    sizes = {"--n": "2", "--calib-images": "4", "--epochs": "1", "--random": "2",
             "--index": "1", "--qat-steps": "2"}  # fmt: skip
    out = []
    for i, token in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev in sizes:
            token = sizes[prev]
        elif token.startswith("configs/") or token.startswith("examples/"):
            token = str(REPO / token)
        if prev == "--config" and token.endswith("pretrain_default.json"):
            token = str(REPO / "configs" / "tiny.json")
        if prev == "--out" and token.rstrip("/") == "data/scenes":
            token = f"data/scenes_generated_{command.line}"  # the guides list alternatives
        out.append(token)
    name = out[1] if out[0] == "neurogshn" else Path(out[1]).name
    if name in ("pretrain", "pretrain_stl.py"):
        out += ["--set", "schedule.max_steps=2", "--set", 'data.root="data/scenes"',
                "--set", "threads=1"]  # fmt: skip
    elif name == "data" and out[2] == "scenes":
        out += ["--train", "6", "--val", "3", "--test", "3", "--image-size", "64",
                "--no-progress"]  # fmt: skip
    elif name == "evaluate":
        out += ["--max-images", "6", "--no-progress"]
    elif name == "finetune":
        out += ["--max-train", "12", "--no-progress"]
    elif name == "verify":
        out += ["--lava-nodes", "8"]
    elif name == "export" and "--data" in out:
        out += ["--calib-images", "4"]
    elif name == "energy" and "--data" in out:
        out += ["--n", "2"]
    return out


@pytest.fixture(scope="module")
def workdir(scenes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as after ``make pretrain``, on the tiny scenes."""
    from PIL import Image

    work = tmp_path_factory.mktemp("documented")
    shutil.copytree(scenes_root, work / "data" / "scenes")
    first_image = next((work / "data" / "scenes" / "images" / "train").glob("*.png"))
    Image.open(first_image).convert("RGB").save(work / "photo.jpg")
    sets = ['data.root="data/scenes"', 'checkpoint.out_dir="runs/pretrain_stl"',
            "schedule.max_steps=6", "eval.enabled=false"]  # fmt: skip
    tiny = str(REPO / "configs" / "tiny.json")
    argv = ["neurogshn", "pretrain", "--config", tiny, *(x for s in sets for x in ("--set", s))]
    proc = _run(argv, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "runs" / "pretrain_stl" / "latest" / "final" / "config.json").is_file()
    return work


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               MPLBACKEND="Agg", PYTHONHASHSEED="0")  # fmt: skip
    if argv[0] == "neurogshn":
        argv = [sys.executable, "-m", "neurogshn.cli", *argv[1:]]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_documented_command_runs_as_written(workdir: Path) -> None:
    ran, skipped, failed = [], [], []
    seen: set[tuple[str, ...]] = set()
    for command in COMMANDS:
        argv = _substituted(command)
        if argv is None:
            skipped.append(command.where)
            continue
        if tuple(argv) in seen:
            continue
        seen.add(tuple(argv))
        t0 = time.perf_counter()
        proc = _run(argv, workdir)
        ran.append(command.where)
        print(f"{time.perf_counter() - t0:6.1f} s  {command.where}")
        if proc.returncode != 0:
            failed.append(f"{command.where}: {command.text}\n    -> rc {proc.returncode}: "
                          f"{(proc.stderr or proc.stdout).strip()[-600:]}")  # fmt: skip
    assert not failed, "documented commands that fail:\n" + "\n".join(failed)
    assert len(ran) >= 20 and len(skipped) <= 2, (ran, skipped)
