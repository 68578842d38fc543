"""Write and read the lava-dl netx HDF5 description of a :class:`QuantizedNetwork`.

Layout (lava-dl ``src/lava/lib/dl/netx/README.md``; every field a dataset, no attributes)::

    layer/0  {type='input', shape=[H0]}                      # graded host input, no neurons
    layer/1  {type='dense', shape=[H0], inFeatures=H0, outFeatures=H0,
              weight=identity (H0×H0), neuron/{type='CUBA', iDecay, vDecay, vThMant,
              refDelay, gradedSpike}}                          # the encoder's layer 0
    layer/2… {type='dense', shape=[H_l], inFeatures, outFeatures, weight (int, H_l×H_{l-1}),
              neuron/{…}}                                      # the encoder's layers 1…
    simulation/{Ts=1, tSample=T}

Load it with ``netx.hdf5.Network(net_config=path, input_message_bits=16)`` so that the first
dense block receives graded messages (see :mod:`neurogshn.hardware.lava_runner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ExportError
from neurogshn.hardware.quantize import QuantizedNetwork
from neurogshn.utils.io import atomic_path


def _string(group: Any, name: str, value: str) -> None:
    group.create_dataset(name, (1,), f"S{max(len(value), 1)}", [value.encode("ascii")])


def _neuron(group: Any, i_decay: int, v_decay: int, vth_mant: int) -> None:
    neuron = group.create_group("neuron")
    _string(neuron, "type", "CUBA")
    neuron.create_dataset("iDecay", data=np.int64(i_decay))
    neuron.create_dataset("vDecay", data=np.int64(v_decay))
    neuron.create_dataset("vThMant", data=np.int64(vth_mant))
    neuron.create_dataset("refDelay", data=np.int64(1))
    neuron.create_dataset("gradedSpike", data=False)


def write_netx(qnet: QuantizedNetwork, path: str | Path) -> Path:
    """Write ``qnet`` as a netx ``.net`` file (atomically). Returns the path."""
    import h5py

    path = Path(path)
    m = qnet.mapping
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _string(g, "type", "input")
        g.create_dataset("shape", data=np.array([qnet.layers[0].size], dtype=np.int64))
        in_size = qnet.layers[0].size
        for i, q in enumerate(qnet.layers, start=1):
            weight = np.eye(q.size, dtype=np.int16) if q.weight is None else q.weight
            g = layers.create_group(str(i))
            _string(g, "type", "dense")
            g.create_dataset("shape", data=np.array([q.size], dtype=np.int64))
            g.create_dataset("inFeatures", data=np.int64(in_size))
            g.create_dataset("outFeatures", data=np.int64(q.size))
            g.create_dataset("weight", data=np.asarray(weight, dtype=np.int16))
            _neuron(g, m.i_decay, m.v_decay, q.vth_mant)
            in_size = q.size
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=np.int64(1))
        sim.create_dataset("tSample", data=np.int64(qnet.time_steps))
    return path


def read_netx(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a ``.net`` file written by :func:`write_netx`.

    Returns:
        one dict per CUBA layer: ``weight`` (int64 ``out×in``), ``iDecay``, ``vDecay``,
        ``vThMant``.

    Raises:
        ExportError: naming the file and what is wrong (not HDF5, truncated, missing fields,
            inconsistent shapes).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such netx file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ExportError(f"{path}: not a readable HDF5 netx file ({exc})") from exc
    out: list[dict[str, Any]] = []
    try:
        with f:
            if "layer" not in f:
                raise ExportError(f"{path}: no 'layer' group (not a netx network)")
            keys = sorted(f["layer"].keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if not keys or keys != [str(i) for i in range(len(keys))]:
                raise ExportError(f"{path}: layer groups must be numbered 0..n-1, got {keys}")
            prev = None
            for k in keys:
                g = f["layer"][k]
                kind = g["type"][0].decode() if "type" in g else None
                if kind == "input":
                    prev = int(np.asarray(g["shape"][()]).prod())
                    continue
                if kind != "dense":
                    raise ExportError(f"{path}: layer/{k}: unsupported type {kind!r}")
                for field in ("weight", "neuron/iDecay", "neuron/vDecay", "neuron/vThMant"):
                    if field not in g:
                        raise ExportError(f"{path}: layer/{k}: missing dataset {field!r}")
                weight = np.asarray(g["weight"][()]).astype(np.int64)
                if weight.ndim != 2 or (prev is not None and weight.shape[1] != prev):
                    raise ExportError(
                        f"{path}: layer/{k}: weight shape {weight.shape} does not follow "
                        f"the previous layer's size {prev}"
                    )
                out.append(
                    {
                        "weight": weight,
                        "iDecay": int(g["neuron/iDecay"][()]),
                        "vDecay": int(g["neuron/vDecay"][()]),
                        "vThMant": int(g["neuron/vThMant"][()]),
                    }
                )
                prev = weight.shape[0]
    except ExportError:
        raise
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise ExportError(f"{path}: corrupt or truncated netx file ({exc})") from exc
    if not out:
        raise ExportError(f"{path}: no dense CUBA layers")
    return out
