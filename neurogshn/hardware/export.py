"""Export the spiking branch: lava-dl netx (``<name>.net`` + JSON sidecar + host weights) or NIR.

The sidecar (``<name>.json``) is the contract between the chip and the host: ``T``, how the
input enters the chip, the quantization scales, the Norse→CUBA mapping, how to load the file
in Lava, where each layer's spikes come out, and what stays on the host.
``<name>.host.safetensors`` holds layer 0's float projection ``W0, b0`` that the host applies.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ExportError
from neurogshn.hardware.nir_export import DEFAULT_NIR_DT
from neurogshn.hardware.quantize import INPUT_MESSAGE_BITS, QuantizedNetwork, quantize_encoder
from neurogshn.utils.io import atomic_path, write_json_atomic

SIDECAR_VERSION = 1

HOST_SIDE = [
    "graph construction and node features (segmenter, backbone, geometry)",
    "the input normalisation that precedes the spiking branch (GSHN: snn_input_norm, LayerNorm)",
    "layer 0's projection W0 x + b0 (float; sent to the chip as graded input messages)",
    "the GAT stage (attention/message passing: no netx or NIR primitive)",
    "the spike readout of E_SNN (spike counts / T -> SpikeReadout), the fusion "
    "V' = r*readout(E_SNN) + F_GAT, pooling and the image embedding",
    "the text encoder and every task head",
]


@dataclass
class ExportResult:
    """Paths written and the sidecar content."""

    net_path: Path | None
    sidecar_path: Path
    sidecar: dict[str, Any]
    qnet: QuantizedNetwork | None = None


def _sidecar(qnet: QuantizedNetwork, name: str, neuron: Any, source: str) -> dict[str, Any]:
    m = qnet.mapping
    return {
        "format": "neurogshn-lava-netx",
        "version": SIDECAR_VERSION,
        "source_checkpoint": source,
        "net_file": f"{name}.net",
        "host_file": f"{name}.host.safetensors",
        "time_steps": qnet.time_steps,
        "sizes": qnet.sizes,
        "in_features": qnet.in_features,
        "norse_neuron": neuron.to_dict(),
        "input_encoding": {
            "kind": "graded input messages (direct/current encoding)",
            "description": (
                "the host computes c = W0 x + b0 (float) per node, sends a = clip(round(c * "
                "input_scale), -saturation, saturation) as a graded message to every layer-0 "
                "neuron at each of the T steps through an identity synapse"
            ),
            "input_scale": qnet.layers[0].scale,
            "message_bits": INPUT_MESSAGE_BITS,
            "saturation": qnet.input_saturation,
        },
        "netx_load": {
            "class": "lava.lib.dl.netx.hdf5.Network",
            "input_message_bits": INPUT_MESSAGE_BITS,
            "reset_interval": qnet.time_steps,
            "reset_offset": 1,
            "note": (
                "stream node k in steps kT..kT+T-1; netx layer j+1 (encoder layer j) emits node "
                "k's step t at Lava step kT+t+j+2 (sink index kT+t+j+1): one step of synaptic "
                "delay per dense block"
            ),
        },
        "norse_to_cuba": {
            "equations": {
                "norse": "i' = (1-ds) i'_prev + c;  v' = (1-dm) v + dm i';  z = v' > v_th",
                "cuba": (
                    "u = (1-iDecay/4096) u + 64 a;  v = (1-vDecay/4096) v + u;  s = v > 64 vThMant"
                ),
                "map": (
                    "iDecay = 4096 ds;  vDecay = 4096 dm;  a = s_l c;  "
                    "vThMant = s_l v_th / dm;  u = 64 s_l i';  v_cuba = 64 s_l v' / dm"
                ),
            },
            **m.to_dict(),
        },
        "layers": [
            {
                "encoder_layer": i,
                "netx_layer": i + 1,
                "size": q.size,
                "scale": q.scale,
                "vThMant": q.vth_mant,
                "input": "graded (host)" if q.weight is None else "spikes",
            }
            for i, q in enumerate(qnet.layers)
        ],
        "quantization": qnet.report(),
        "output": "E_SNN = spike count of the last layer / T (computed on the host)",
        "stays_on_host": HOST_SIDE,
    }


def export_lava(
    branch: Any,
    out_dir: str | Path,
    name: str = "spiking_encoder",
    calibration_inputs: np.ndarray | None = None,
    *,
    clip: bool = False,
    weight_scale: float | None = None,
) -> ExportResult:
    """Quantize the branch's encoder and write ``<name>.net``, ``.json`` and host weights."""
    from safetensors.numpy import save_file

    from neurogshn.hardware.netx_export import write_netx

    start = time.perf_counter()
    # quantize first: a network the target cannot express is refused before any file exists
    qnet = quantize_encoder(
        branch.encoder, calibration_inputs, weight_scale=weight_scale, clip=clip
    )
    with output_dir(out_dir) as out:
        net_path = write_netx(qnet, out / f"{name}.net")
        with atomic_path(out / f"{name}.host.safetensors") as tmp:
            save_file({"W0": qnet.host_weight, "b0": qnet.host_bias}, str(tmp))
        sidecar = _sidecar(qnet, name, branch.encoder.neuron, branch.source)
        sidecar["export_seconds"] = time.perf_counter() - start
        sidecar_path = out / f"{name}.json"
        write_json_atomic(sidecar_path, sidecar)
    return ExportResult(net_path, sidecar_path, sidecar, qnet)


@contextlib.contextmanager
def output_dir(out_dir: str | Path) -> Iterator[Path]:
    """The export folder, created if needed; a folder this export created is removed again
    when the export fails before anything is written into it.

    Raises:
        ExportError: naming the path, when it is a file, cannot be created or is not writable.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory (choose another --out)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the export folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: the export folder is not writable")
    try:
        yield out
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def export_nir(
    branch: Any,
    out_dir: str | Path,
    name: str = "spiking_encoder",
    dt: float = DEFAULT_NIR_DT,
    check_inputs: np.ndarray | None = None,
    check_source: str = "",
    consumers: list[str] | None = None,
) -> ExportResult:
    """Write ``<name>.nir`` (float network, continuous-time reading at ``dt``) and a sidecar.

    With ``check_inputs`` (``N×F`` encoder inputs), the sidecar's ``consumers`` section holds the
    spike agreement per layer of every NIR consumer (:mod:`~neurogshn.hardware.nir_consumers`)
    with the encoder on those inputs; ``check_source`` says where the inputs came from.
    """
    import torch

    from neurogshn.hardware.nir_consumers import NIR_CONSUMERS, compare_consumers
    from neurogshn.hardware.nir_export import write_nir

    enc = branch.encoder
    reports = []
    if check_inputs is not None:
        x = torch.as_tensor(np.asarray(check_inputs), dtype=torch.float32)
        reports = compare_consumers(enc, x, dt, consumers)
    with output_dir(out_dir) as out:
        path = write_nir(enc, out / f"{name}.nir", dt)
        sidecar = {
            "format": "neurogshn-nir",
            "version": SIDECAR_VERSION,
            "source_checkpoint": branch.source,
            "nir_file": path.name,
            "time_steps": enc.time_steps,
            "dt_seconds": dt,
            "input_encoding": "constant current: layer 0's Affine receives x at every step",
            "cuba_parameters": "tau_syn = dt/(dt_enc*tau_syn_inv), tau_mem = dt/(dt_enc*"
            "tau_mem_inv), w_in = tau_syn/dt, r = tau_mem/dt, v_threshold = v_th/(dt_enc*"
            "tau_mem_inv), v_leak = v_reset = 0: forward Euler at dt is the encoder",
            "load": {c.name: c.load.replace("DT", repr(dt)) for c in NIR_CONSUMERS.values()},
            "consumers": [r.to_dict() for r in reports],
            "consumer_check_inputs": check_source if reports else "not checked",
            "stays_on_host": [h for h in HOST_SIDE if not h.startswith("layer 0")],
        }
        sidecar_path = out / f"{name}.nir.json"
        write_json_atomic(sidecar_path, sidecar)
    return ExportResult(None, sidecar_path, sidecar)


@dataclass
class LoadedExport:
    """A netx export read back: sidecar, ``.net`` path, host weights."""

    sidecar: dict[str, Any]
    net_path: Path
    host_weight: np.ndarray
    host_bias: np.ndarray

    @property
    def time_steps(self) -> int:
        return int(self.sidecar["time_steps"])

    def host_input(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Graded layer-0 messages for encoder inputs ``x`` (and the saturated count)."""
        enc = self.sidecar["input_encoding"]
        c = np.asarray(x, np.float64) @ self.host_weight.astype(np.float64).T + self.host_bias
        a = np.round(c * float(enc["input_scale"]))
        sat = int(enc["saturation"])
        n_sat = int(np.count_nonzero(np.abs(a) > sat))
        return np.clip(a, -sat, sat).astype(np.int32), n_sat


def load_export(export_dir: str | Path, name: str | None = None) -> LoadedExport:
    """Read an export directory written by :func:`export_lava`.

    Raises:
        ExportError: naming the missing or malformed file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    export_dir = Path(export_dir)
    if name is None:
        sidecars = [
            p for p in sorted(export_dir.glob("*.json")) if not p.name.endswith(".nir.json")
        ]
        if len(sidecars) != 1:
            raise ExportError(
                f"{export_dir}: expected exactly one netx sidecar *.json, found "
                f"{[p.name for p in sidecars]} (pass the export name)"
            )
        sidecar_path = sidecars[0]
    else:
        sidecar_path = export_dir / f"{name}.json"
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{sidecar_path}: unreadable sidecar ({exc})") from exc
    if sidecar.get("format") != "neurogshn-lava-netx":
        raise ExportError(f"{sidecar_path}: not a neurogshn netx export sidecar")
    host_path = export_dir / sidecar["host_file"]
    try:
        host = load_file(str(host_path))
        w0, b0 = host["W0"], host["b0"]
    except (SafetensorError, OSError, KeyError) as exc:
        raise ExportError(f"{host_path}: missing or corrupt host weights ({exc})") from exc
    return LoadedExport(sidecar, export_dir / sidecar["net_file"], w0, b0)
