r"""Run an exported NIR graph in other simulators and measure spike agreement with the encoder.

Each :class:`NIRConsumer` names a simulator's own NIR importer, the time-step convention that
importer uses, and — where it cannot express the encoder exactly — why. :func:`compare_consumers`
exports the encoder truncated after each spiking layer (so every layer's spikes are the graph's
output, whatever the consumer exposes), runs each truncated graph in each consumer on the same
inputs for ``T`` steps, and reports per layer the share of (step, node, neuron) entries whose
spike count equals the encoder's, and both firing rates.

Consumers:

* ``norse`` — ``norse.torch.from_nir(graph, dt=dt)``: forward Euler at the export's ``dt``,
  reset to ``v_reset``. Exact reading of :mod:`~neurogshn.hardware.nir_export`.
* ``snntorch`` — ``snntorch.import_nir.import_from_nir(graph)``: ``Synaptic`` neurons with
  ``alpha = 1 − dt/tau_syn``, ``beta = 1 − dt/tau_mem`` at a fixed ``dt = 1e-4`` s, reset to
  zero, threshold divided by ``w_in·dt/tau_syn``; it refuses a graph unless
  ``r = tau_mem / 1e-4``. Exact when the export used ``dt = 1e-4``.
* ``rockpool`` — ``rockpool.nn.modules.torch.nir.from_nir(graph)``: ``LIFTorch`` neurons with
  exponential decays ``exp(−dt'/tau)`` at ``dt' = min(tau_mem / (1 + r))``; ``w_in`` and ``r``
  are not read; the synaptic current decays in the step its input arrives; the spike output is
  a count ``floor(v / v_th)`` with a subtractive reset. It cannot express the encoder's
  Euler step with reset to zero, so its agreement is measured, not exact.

A consumer whose package is not installed is reported as such (``pip install -e .[interop]`` or
``make setup`` installs the pinned peers).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from neurogshn.hardware.nir_export import DEFAULT_NIR_DT, encoder_to_nir
from neurogshn.utils.names import layer_name

RunFn = Callable[[Any, Tensor, int, float], Tensor]


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """Silence importers that print progress to stdout."""
    return contextlib.redirect_stdout(io.StringIO())


def run_norse(graph: Any, x: Tensor, time_steps: int, dt: float) -> Tensor:
    """Run ``graph`` in Norse with constant input ``x`` (``N×F``); returns ``T×N×H`` spikes."""
    import norse.torch

    module = norse.torch.from_nir(graph, dt=dt)
    state = None
    outs = []
    with torch.no_grad():
        for _ in range(time_steps):
            out, state = module(x, state)
            outs.append(out)
    return torch.stack(outs)


def run_snntorch(graph: Any, x: Tensor, time_steps: int, dt: float) -> Tensor:
    """Run ``graph`` in snnTorch (its importer fixes ``dt = 1e-4`` s; ``dt`` is unused)."""
    from snntorch.import_nir import import_from_nir

    with _quiet():
        module = import_from_nir(graph)
    state = None
    outs = []
    with torch.no_grad(), _quiet():
        for _ in range(time_steps):
            out, state = module(x) if state is None else module(x, state)
            outs.append(out)
    return torch.stack(outs)


def run_rockpool(graph: Any, x: Tensor, time_steps: int, dt: float) -> Tensor:
    """Run ``graph`` in Rockpool's torch backend (it derives its own ``dt``; ``dt`` is unused)."""
    from rockpool.nn.modules.torch.nir import from_nir

    with _quiet():
        module = from_nir(graph)
    series = x.unsqueeze(1).expand(-1, time_steps, -1).contiguous()  # batch × time × features
    with torch.no_grad(), _quiet():
        out = module(series)
    spikes = out[0] if isinstance(out, tuple) else out
    return spikes.permute(1, 0, 2).contiguous()


@dataclass(frozen=True)
class NIRConsumer:
    """A simulator that reads NIR graphs.

    Attributes:
        name: short name used on the command line.
        package: the distribution whose version is reported.
        load: how a user loads the exported file in that simulator.
        dt_convention: how the importer turns NIR's time constants into a discrete step.
        required_dt: the only export ``dt`` the importer accepts, if it fixes one.
        differences: what the importer cannot express of the encoder (empty: exact reading).
        run: ``(graph, x, T, dt) → T×N×H`` spikes.
    """

    name: str
    package: str
    load: str
    dt_convention: str
    required_dt: float | None
    differences: tuple[str, ...]
    run: RunFn

    @property
    def exact(self) -> bool:
        return not self.differences

    def version(self) -> str | None:
        """The installed version of :attr:`package`, or ``None`` when it is not installed."""
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


NIR_CONSUMERS: dict[str, NIRConsumer] = {
    c.name: c
    for c in (
        NIRConsumer(
            name="norse",
            package="norse",
            load="norse.torch.from_nir(nir.read(path), dt=DT); call module(x, state) T times",
            dt_convention="forward Euler at the dt passed to from_nir (pass the export's dt)",
            required_dt=None,
            differences=(),
            run=run_norse,
        ),
        NIRConsumer(
            name="snntorch",
            package="snntorch",
            load="snntorch.import_nir.import_from_nir(nir.read(path)); call module(x, state) "
            "T times",
            dt_convention="forward Euler at a fixed dt = 1e-4 s (alpha = 1 - dt/tau_syn, "
            "beta = 1 - dt/tau_mem); refuses r != tau_mem/1e-4",
            required_dt=1e-4,
            differences=(),
            run=run_snntorch,
        ),
        NIRConsumer(
            name="rockpool",
            package="rockpool",
            load="rockpool.nn.modules.torch.nir.from_nir(nir.read(path)); call module(x_btf) "
            "with x repeated over T (batch × time × features)",
            dt_convention="exponential decays exp(-dt'/tau) at dt' = min(tau_mem/(1 + r)), "
            "derived from the graph",
            required_dt=None,
            differences=(
                "exponential decay exp(-dt'/tau) with its own dt' instead of the encoder's "
                "Euler factors (1 - dt/tau)",
                "w_in and r are not read (unit gains assumed)",
                "the synaptic current decays in the step its input arrives",
                "spike counts floor(v/v_th) per step with a subtractive reset, where the encoder "
                "emits one spike and resets to zero",
            ),
            run=run_rockpool,
        ),
    )
}


@dataclass
class LayerAgreement:
    """Spike agreement of one layer: ``agreement`` is the share of equal entries."""

    layer: str
    agreement: float
    reference_rate: float
    consumer_rate: float


@dataclass
class ConsumerReport:
    """One consumer's reading of the export: ``status`` is ``ok``, ``not installed`` or
    ``refused: <reason>``."""

    consumer: str
    version: str | None
    status: str
    exact_reading: bool
    dt_convention: str
    load: str
    differences: list[str]
    layers: list[LayerAgreement] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.status == "ok" and all(la.agreement == 1.0 for la in self.layers)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["identical"] = self.identical
        return out


def compare_consumers(
    encoder: Any,
    x: Tensor,
    dt: float = DEFAULT_NIR_DT,
    consumers: Sequence[str] | None = None,
) -> list[ConsumerReport]:
    """Run the encoder's NIR export in each consumer and compare spikes per layer.

    Args:
        encoder: a :class:`~neurogshn.model.spiking.SpikingEncoder`.
        x: encoder inputs, ``N×F`` (presented at every step).
        dt: the export's time step in seconds.
        consumers: names from :data:`NIR_CONSUMERS` (default all).

    Returns:
        one :class:`ConsumerReport` per consumer, in the order asked.
    """
    names = list(NIR_CONSUMERS) if consumers is None else list(consumers)
    unknown = [n for n in names if n not in NIR_CONSUMERS]
    if unknown:
        raise ValueError(f"unknown NIR consumer(s) {unknown}; known: {sorted(NIR_CONSUMERS)}")
    encoder = copy.deepcopy(encoder).cpu().eval()
    x = x.detach().to(torch.float32).cpu()
    with torch.no_grad():
        reference = list(encoder(x).spikes)
    graphs = [encoder_to_nir(encoder, dt, num_layers=k + 1) for k in range(len(reference))]
    reports = []
    for name in names:
        consumer = NIR_CONSUMERS[name]
        report = ConsumerReport(
            consumer=name,
            version=consumer.version(),
            status="ok",
            exact_reading=consumer.exact,
            dt_convention=consumer.dt_convention,
            load=consumer.load,
            differences=list(consumer.differences),
        )
        reports.append(report)
        if report.version is None:
            report.status = "not installed"
            continue
        try:
            for k, (graph, want) in enumerate(zip(graphs, reference, strict=True)):
                got = consumer.run(graph, x, encoder.time_steps, dt)
                if got.shape != want.shape:
                    raise RuntimeError(f"output shape {tuple(got.shape)} != {tuple(want.shape)}")
                report.layers.append(
                    LayerAgreement(
                        layer=layer_name(k),
                        agreement=float((got == want).float().mean()),
                        reference_rate=float(want.mean()),
                        consumer_rate=float(got.float().mean()),
                    )
                )
        except Exception as exc:  # an importer's refusal is a finding to report, not a crash
            report.status = f"refused: {type(exc).__name__}: {exc}".strip()
            report.layers.clear()
    return reports


def format_consumer_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :meth:`ConsumerReport.to_dict` rows: consumer, version, whether
    its reading is exact, and the agreement per layer (or why there is none)."""
    n_layers = max((len(r["layers"]) for r in reports), default=0)
    head = ["consumer", "version", "exact reading"] + [layer_name(k) for k in range(n_layers)]
    rows = [head]
    for r in reports:
        cells = [r["consumer"], r["version"] or "-", "yes" if r["exact_reading"] else "no"]
        if r["status"] == "ok":
            cells += [f"{100 * la['agreement']:.2f} %" for la in r["layers"]]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(head))]
    for row, r in zip(rows[1:], reports, strict=True):
        if r["status"] != "ok":  # the reason runs across the layer columns
            row.append(r["status"])
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=False)).rstrip()
        for row in rows
    )
