"""Numeric command-line options out of range are refused when the command line is read: exit 2
and a message naming the option and the problem, before any file is opened."""

from __future__ import annotations

import pytest

from neurogshn.cli import main
from neurogshn.cli.types import nonnegative_float, nonnegative_int, positive_float, positive_int

# (command line without the value, value, the words the message must contain)
CASES = [
    (["evaluate", "--task", "retrieval", "--checkpoint", "C", "--data", "D", "--max-images"], "-1"),
    (["evaluate", "--task", "retrieval", "--checkpoint", "C", "--data", "D", "--max-images"], "0"),
    (["evaluate", "--task", "retrieval", "--checkpoint", "C", "--data", "D", "--rerank"], "-3"),
    (["evaluate", "--task", "retrieval", "--checkpoint", "C", "--data", "D", "--batch-size"], "0"),
    (
        ["evaluate", "--task", "retrieval", "--checkpoint", "C", "--data", "D", "--score-weight"],
        "nan",
    ),
    (["energy", "--checkpoint", "C", "--random"], "-2"),
    (["energy", "--checkpoint", "C", "--data", "D", "--n"], "-1"),
    (["verify", "--export", "E", "--checkpoint", "C", "--data", "D", "--n"], "-1"),
    (["verify", "--export", "E", "--checkpoint", "C", "--random"], "0"),
    (["verify", "--export", "E", "--checkpoint", "C", "--data", "D", "--lava-nodes"], "-5"),
    (
        ["finetune", "--task", "vqa", "--from", "C", "--data", "D", "--out", "O", "--epochs"],
        "0",
    ),
    (
        ["finetune", "--task", "vqa", "--from", "C", "--data", "D", "--out", "O", "--lr"],
        "-0.001",
    ),
    (
        ["finetune", "--task", "vqa", "--from", "C", "--data", "D", "--out", "O", "--seed"],
        "-1",
    ),
    (["data", "scenes", "--out", "O", "--train"], "-10"),
    (["data", "scenes", "--out", "O", "--image-size"], "zero"),
    (["data", "graphs", "--data", "D", "--batch-size"], "0"),
    (["export", "--checkpoint", "C", "--out", "O", "--calib-images"], "-1"),
    (["raster", "--checkpoint", "C", "--data", "D", "--out", "O.png", "--index"], "-1"),
]


@pytest.mark.parametrize("argv,value", CASES, ids=[f"{a[0]} {a[-1]} {v}" for a, v in CASES])
def test_out_of_range_number_is_refused_naming_the_option(argv, value, capsys, tmp_path):
    before = set(tmp_path.iterdir())
    assert main([*argv, value]) == 2
    err = capsys.readouterr().err
    assert argv[-1] in err, err
    assert repr(value) in err and ("integer" in err or "number" in err), err
    assert set(tmp_path.iterdir()) == before


def test_random_images_and_a_data_count_are_refused_together(capsys):
    code = main(["energy", "--checkpoint", "nowhere", "--random", "4", "--n", "3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--n" in err and "--random" in err


@pytest.mark.parametrize(
    "parse,good,bad",
    [
        (positive_int, ["1", "64"], ["0", "-1", "1.5", "x", ""]),
        (nonnegative_int, ["0", "7"], ["-1", "2.0"]),
        (positive_float, ["1e-4", "2"], ["0", "-0.1", "nan", "inf"]),
        (nonnegative_float, ["0", "0.5"], ["-1e-9", "nan", "-inf"]),
    ],
)
def test_the_types_accept_and_refuse(parse, good, bad):
    import argparse

    for text in good:
        assert parse(text) == type(parse(text))(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
