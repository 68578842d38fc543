"""Hardware path of the spiking branch (Loihi via lava-dl netx, NIR), verification, energy.

Modules (import them directly; nothing heavy is imported here):

* :mod:`~neurogshn.hardware.quantize`: exact Norse → CUBA mapping and quantization.
* :mod:`~neurogshn.hardware.netx_export`: write/read the netx HDF5 ``.net`` file.
* :mod:`~neurogshn.hardware.export`: ``.net`` + JSON sidecar + host weights; NIR export.
* :mod:`~neurogshn.hardware.fixed_point`: NumPy integer reference, bit-exact with Lava.
* :mod:`~neurogshn.hardware.lava_runner`: run a ``.net`` in ``Loihi2SimCfg(select_tag=…)``.
* :mod:`~neurogshn.hardware.nir_export`: NIR graph of the float encoder.
* :mod:`~neurogshn.hardware.verify`: Lava vs reference, float vs quantized, downstream.
* :mod:`~neurogshn.hardware.qat`: quantization-aware fine-tuning.
* :mod:`~neurogshn.hardware.profiles`, :mod:`~neurogshn.hardware.energy`,
  :mod:`~neurogshn.hardware.energy_report`: energy constants and estimates.
* :mod:`~neurogshn.hardware.source`: load the spiking branch from a checkpoint.

See docs/hardware.md and docs/energy.md.
"""
