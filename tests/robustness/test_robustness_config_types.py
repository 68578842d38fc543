"""Wrong-typed configuration values are refused with the field's name and the expected type,
wherever they come from: a training config file, model overrides, a checkpoint's config."""

from __future__ import annotations

import json

import pytest

from neurogshn.cli import main
from neurogshn.errors import NeurogshnError
from neurogshn.model.config import GSHNConfig


@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"embed_dim": "thirty-two"}, ["embed_dim", "int", "thirty-two"]),
        ({"snn_hidden": 32}, ["snn_hidden", "list", "32"]),
        ({"snn_hidden": [32, "x"]}, ["snn_hidden[1]", "int"]),
        ({"dropout": "high"}, ["dropout", "float"]),
        ({"itm_attention_sink": "yes"}, ["itm_attention_sink", "bool"]),
        ({"neuron": {"v_th": "one"}}, ["neuron.v_th", "float"]),
    ],
)
def test_model_config_names_the_field(overrides, words):
    with pytest.raises(NeurogshnError) as exc:
        GSHNConfig(**overrides)
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_valid_json_values_are_accepted():
    config = GSHNConfig(snn_hidden=[64, 64], dropout=0, neuron={"v_th": 1})
    assert config.snn_hidden == (64, 64) and config.dropout == 0.0
    assert config.neuron.v_th == 1.0


def test_train_config_file_names_file_and_field(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schedule": {"epochs": "ten"}}))
    code = main(["pretrain", "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "schedule.epochs" in err and "int" in err
    assert not (tmp_path / "run").exists()


def test_model_overrides_in_a_train_config_name_the_field(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {"overrides": {"embed_dim": "thirty-two"}}}))
    code = main(
        [
            "pretrain",
            "--config",
            str(path),
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "embed_dim" in err and "thirty-two" in err
    assert not (tmp_path / "none").exists()  # refused before any data is generated
