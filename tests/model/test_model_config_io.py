"""GSHNConfig JSON round-trip, named configs, save/load and checkpoint errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.model import GSHN, GSHNConfig, config_from_name
from neurogshn.model.spiking import LIFNeuronParameters


def test_config_json_round_trip(tmp_path):
    cfg = config_from_name(
        "gshn-tiny", neuron=LIFNeuronParameters(tau_mem_inv=0.5, v_th=0.8), snn_hidden=[16, 8]
    )
    cfg.to_json(tmp_path / "c.json")
    back = GSHNConfig.from_json(tmp_path / "c.json")
    assert back == cfg
    assert isinstance(back.neuron, LIFNeuronParameters) and back.neuron.v_th == 0.8
    assert back.snn_hidden == (16, 8)
    other = cfg.replace(itm_mlm_score_weight=0.5, itm_mlm_score_words=3)
    assert GSHNConfig.from_dict(json.loads(json.dumps(other.to_dict()))) == other
    assert json.loads((tmp_path / "c.json").read_text())["neuron"]["tau_mem_inv"] == 0.5


def test_config_errors_and_aliases():
    with pytest.raises(ConfigError, match="unknown field"):
        GSHNConfig.from_dict({"embed_dimm": 3})
    with pytest.raises(ConfigError, match="mode"):
        config_from_name("gshn-tiny", mode="hybrid")
    with pytest.raises(ConfigError, match="unknown model configuration"):
        config_from_name("gshn-huge")
    with pytest.raises(ConfigError, match="spiking branch"):
        config_from_name("gshn-tiny", mode="gat_only")  # CL/STL need the SNN
    with pytest.raises(ConfigError, match="cl_windows"):
        config_from_name("gshn-tiny", cl_windows=9)
    with pytest.raises(ConfigError, match="itm_mlm_mask_rate"):
        config_from_name("gshn-tiny", itm_mlm_mask_rate=1.5)
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_name("gshn-tiny", itm_relation_vocab=["left of"])  # removed
    cfg = config_from_name("default", itc=0.5, stl=0.0)
    assert cfg.itc_weight == 0.5 and cfg.stl_weight == 0.0
    assert config_from_name("default") == config_from_name("gshn-small")


def test_save_load_identical_outputs(tmp_path, tiny_model, make_batch, captions):
    tiny_model.eval()
    with torch.no_grad():
        tiny_model.fusion.ratio.fill_(0.37)
    batch = make_batch()
    out = tiny_model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = GSHN.from_pretrained(tmp_path / "ckpt", device="cpu").eval()
    assert loaded.config == tiny_model.config
    assert loaded.fusion_ratio == pytest.approx(0.37)
    a, b = tiny_model.encode_image(batch), loaded.encode_image(batch)
    torch.testing.assert_close(a.image_embeds, b.image_embeds, rtol=0, atol=0)
    for sa, sb in zip(a.spikes, b.spikes, strict=True):
        assert torch.equal(sa, sb)
    ta, tb = tiny_model.encode_text(captions), loaded.encode_text(captions)
    torch.testing.assert_close(ta.text_embeds, tb.text_embeds, rtol=0, atol=0)


def test_load_errors(tmp_path, tiny_model, tiny_overrides):
    with pytest.raises(CheckpointError, match="does not exist"):
        GSHN.from_pretrained(tmp_path / "nope")
    ckpt = tiny_model.save_pretrained(tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()

    # truncated
    bad = tmp_path / "trunc"
    bad.mkdir()
    (bad / "config.json").write_text((ckpt / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        GSHN.from_pretrained(bad)
    assert "model.safetensors" in str(info.value)

    # a pickle handed as weights: refused, never unpickled
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (bad / "model.safetensors").write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        GSHN.from_pretrained(bad)
    torch.save(tiny_model.state_dict(), bad / "model.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        GSHN.from_pretrained(bad)
    assert not marker.exists()

    # missing file
    (bad / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        GSHN.from_pretrained(bad)

    # broken config
    (bad / "model.safetensors").write_bytes(data)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        GSHN.from_pretrained(bad)

    # weights of another configuration: the keys are named
    other = tmp_path / "other"
    other.mkdir()
    cfg = config_from_name("gshn-tiny", **tiny_overrides, embed_dim=48, itm_weight=0.0)
    (other / "config.json").write_text(json.dumps(cfg.to_dict()))
    (other / "model.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match="another configuration") as info:
        GSHN.from_pretrained(other)
    msg = str(info.value)
    assert "unexpected" in msg and "itm_head" in msg and "shape mismatch" in msg


def test_safetensors_header_length_starting_with_pickle_byte_loads(tmp_path):
    """A valid safetensors file whose u64 header length has 0x80 as its first byte (here
    0x5780 bytes, as one ablation checkpoint had) is not mistaken for a pickle."""
    from safetensors.torch import save_file

    from neurogshn.utils.weights import read_safetensors

    path = tmp_path / "w.safetensors"
    tensors = {"a": torch.arange(3.0)}
    save_file(tensors, str(path), metadata={"pad": ""})
    base = int.from_bytes(path.read_bytes()[:8], "little")
    for pad in range(0x5780 - base - 8, 0x5780 - base + 8):  # header padded to 8 bytes
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x57":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert torch.equal(read_safetensors(path)["a"], tensors["a"])
