"""Energy bar charts from the energy report (estimates, never measurements).

The energy report (``neurogshn energy``, :func:`neurogshn.hardware.energy.estimate_energy`)
gives the estimated energy per image of each model part on each hardware profile (45 nm CMOS
after Horowitz 2014, Loihi after Davies et al. 2018). :func:`energy_table` reads it into
``{profile: {component: joules per image}}``. It reads the hardware report's own layout::

    {"units": "pJ", "note": "...estimates...",
     "energy_per_image_pJ": {"snn_cmos45nm": 1.1e6, "ann_cmos45nm": 1.2e6,
                             "snn_loihi1": 3.0e6, "gat_host_cmos45nm": 2.9e6}, ...}

where a key ``<part>_<profile>`` is split into the part (``snn`` → "spiking branch", ``ann`` →
"ANN equivalent", ``gat_host`` → "GAT host") and the profile (``cmos45nm``, ``loihi1``). It also
reads a direct per-profile table::

    {"unit": "J",                           # "J" (default), "mJ", "uJ", "nJ", "pJ"
     "profiles": {"cmos45nm": {"spiking branch": 1.2e-7, "ANN equivalent": 3.4e-6,
                               "GAT host": 2.0e-6}, ...}}

(also ``{"profiles": {name: {"per_image_J": {...}}}}`` and
``{"profiles": [{"name": ..., "per_image_J": {...}}]}``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neurogshn.viz.style import new_axes

#: Part prefixes of the hardware report's ``energy_per_image_<unit>`` keys → display names.
PART_NAMES = {"gat_host": "GAT host", "snn": "spiking branch", "ann": "ANN equivalent"}
_UNIT_SCALE = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12}
_PER_IMAGE_KEYS = (
    "per_image_J",
    "per_image_j",
    "energy_per_image_J",
    "energy_per_image_j",
    "joules_per_image",
    "per_image",
    "components",
)


def _components(value: Any, scale: float, where: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        for key in _PER_IMAGE_KEYS:
            if key in value and isinstance(value[key], Mapping):
                return _components(value[key], scale, f"{where}.{key}")
        out: dict[str, float] = {}
        for name, v in value.items():
            if isinstance(v, bool):
                continue
            if isinstance(v, int | float):
                out[str(name)] = float(v) * scale
            elif isinstance(v, Mapping) and isinstance(v.get("joules", v.get("J")), int | float):
                out[str(name)] = float(v.get("joules", v.get("J"))) * scale
        if out:
            return out
    raise ValueError(f"{where}: no per-image energies (numbers in joules) found")


def _split_part_profile(
    values: Mapping[str, Any], scale: float, where: str
) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{where}.{key}: expected a number, got {v!r}")
        part, profile = key, "estimate"
        for prefix, name in PART_NAMES.items():
            if key.startswith(prefix + "_"):
                part, profile = name, key[len(prefix) + 1 :]
                break
        table.setdefault(profile, {})[part] = float(v) * scale
    if not table:
        raise ValueError(f"{where}: no per-image energies")
    return table


def _read_report(report: Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    """The report dict itself, or the JSON object in the file ``report``."""
    if isinstance(report, Mapping):
        return report
    from neurogshn.errors import InputFileError

    try:
        with open(report, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputFileError(report, "energy report not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(report, f"not a readable JSON energy report ({exc})") from None
    if not isinstance(data, Mapping):
        raise InputFileError(str(report), "energy report must be a JSON object")
    return data


def energy_table(report: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read an energy report into ``{profile: {component: joules per image}}``.

    Args:
        report: the report dict or the path of its JSON file.

    Raises:
        neurogshn.errors.InputFileError: a path that is missing or not JSON.
        ValueError: a dict without per-profile energies.
    """
    report = _read_report(report)
    for key, value in report.items():
        if key.startswith("energy_per_image_") and isinstance(value, Mapping):
            unit = key.removeprefix("energy_per_image_")
            if unit not in _UNIT_SCALE:
                raise ValueError(f"{key}: unknown energy unit {unit!r}")
            return _split_part_profile(value, _UNIT_SCALE[unit], key)
    unit = str(report.get("unit", "J"))
    if unit not in _UNIT_SCALE:
        raise ValueError(f"unknown energy unit {unit!r}; expected one of {sorted(_UNIT_SCALE)}")
    scale = _UNIT_SCALE[unit]
    profiles = report.get("profiles")
    if isinstance(profiles, list):
        items = []
        for i, p in enumerate(profiles):
            if not isinstance(p, Mapping) or "name" not in p:
                raise ValueError(f"profiles[{i}] needs a 'name'")
            items.append((str(p["name"]), p))
    elif isinstance(profiles, Mapping):
        items = [(str(k), v) for k, v in profiles.items()]
    else:
        raise ValueError("energy report has no 'profiles' (a dict or a list)")
    if not items:
        raise ValueError("energy report has no profiles")
    return {name: _components(p, scale, f"profiles.{name}") for name, p in items}


def _pick_unit(max_joules: float) -> tuple[str, float]:
    for unit, scale in (("pJ", 1e-12), ("nJ", 1e-9), ("µJ", 1e-6), ("mJ", 1e-3)):
        if max_joules < scale * 1e3:
            return unit, scale
    return "J", 1.0


def plot_energy(
    report: Mapping[str, Any] | str | os.PathLike[str],
    *,
    unit: str | None = None,
    title: str | None = None,
    log: bool = False,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (6.5, 4.0),
) -> Figure:
    """Grouped bar chart of the estimated energy per image, one group per hardware profile.

    Args:
        report: the energy report (dict or JSON path, see :func:`energy_table`).
        unit: ``"pJ"``, ``"nJ"``, ``"µJ"``/``"uJ"``, ``"mJ"`` or ``"J"``; default: the largest
            unit in which the biggest bar stays below 1000.
        title: axes title.
        log: a log y axis (for parts that differ by decades), marked "log scale" on the axis
            label; default a linear axis from zero, so bar heights compare as the values do.
        ax: axes to draw into.
        figsize: size of a new figure.

    Returns:
        The figure; bar heights are the energies in ``unit``, each bar labelled with its
        value. Components missing from a profile are left out of its group.
    """
    table = energy_table(report)
    values = [v for comps in table.values() for v in comps.values()]
    positive = [v for v in values if v > 0]
    if not positive:
        raise ValueError("energy report has no positive energies to plot")
    if unit is None:
        unit, scale = _pick_unit(max(positive))
    else:
        if unit not in _UNIT_SCALE:
            raise ValueError(f"unknown unit {unit!r}; expected one of {sorted(_UNIT_SCALE)}")
        scale = _UNIT_SCALE[unit]
        unit = "µJ" if unit == "uJ" else unit
    components: list[str] = []
    for comps in table.values():
        components.extend(c for c in comps if c not in components)
    profiles = list(table)
    fig, ax = new_axes(ax, figsize)
    width = 0.8 / len(components)
    x = np.arange(len(profiles))
    for k, comp in enumerate(components):
        xs, hs = [], []
        for i, prof in enumerate(profiles):
            if comp in table[prof] and table[prof][comp] > 0:
                xs.append(x[i] + (k - (len(components) - 1) / 2) * width)
                hs.append(table[prof][comp] / scale)
        bars = ax.bar(xs, hs, width=width * 0.95, label=comp)
        ax.bar_label(bars, labels=[f"{h:.3g}" for h in hs], fontsize=7, padding=2)
    lo = min(positive) / scale
    hi = max(positive) / scale
    if log:
        ax.set_yscale("log")
        ax.set_ylim(lo / 3, hi * 6)
        if np.log10(hi / lo) < 3:  # few decades: label 1-2-5 steps so values can be read off
            from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, hi * 1.25)  # room for the value labels and the legend
    ax.set_xticks(x, labels=profiles)
    ax.set_xlim(-0.5, len(profiles) - 0.5)
    ax.set_xlabel("hardware profile")
    ax.set_ylabel(f"energy per image ({unit}), estimate" + (", log scale" if log else ""))
    ax.legend(fontsize="small", loc="upper left", ncols=min(3, len(components)))
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_title(title or "Estimated energy per image (estimate, not a measurement)")
    return fig


def plot_energy_report(
    report: Mapping[str, Any] | str | os.PathLike[str],
    *,
    log: bool = False,
    figsize: tuple[float, float] = (11.0, 4.2),
) -> Figure:
    """The figure of ``neurogshn energy --plot``: :func:`plot_energy` beside the firing rate of
    each spiking layer of the quantized branch (the activity the estimate is built on).

    Args:
        report: the energy report of ``neurogshn energy`` (dict or JSON path).
        log: passed to :func:`plot_energy`.
        figsize: figure size.
    """
    data = _read_report(report)
    fig = Figure(figsize=figsize, layout="constrained")
    ax_energy, ax_rates = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    plot_energy(data, log=log, ax=ax_energy)
    layers = data.get("activity_quantized", {}).get("layers", [])
    if not layers:
        raise ValueError("energy report has no activity_quantized.layers to plot rates from")
    names = [str(layer["name"]) for layer in layers]
    rates = [float(layer["firing_rate"]) for layer in layers]
    bars = ax_rates.bar(names, rates, color="tab:gray")
    ax_rates.bar_label(bars, labels=[f"{r:.3f}" for r in rates], fontsize=8, padding=2)
    ax_rates.set_ylim(0, max(max(rates) * 1.25, 1e-3))
    ax_rates.set_ylabel("firing rate (spikes / neuron / step)")
    ax_rates.set_title("quantized spiking branch: activity per layer")
    ax_rates.grid(axis="y", alpha=0.3)
    return fig
