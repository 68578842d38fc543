"""Helpers shared by the plots: Agg backend, array conversion, axes creation, saving.

Every plotting function in :mod:`neurogshn.viz` takes an optional ``ax`` (or figure) and
returns the :class:`matplotlib.figure.Figure` it drew on; none of them runs a model.

Figures are created as plain :class:`~matplotlib.figure.Figure` objects, not through
``pyplot``: no global figure registry, no GUI backend, and rendering goes through Agg
(``savefig`` / :func:`render_rgb`). In a notebook, a returned figure displays as the cell's
value (:class:`VizFigure` has ``_repr_png_``); pass ``ax=plt.gca()`` to draw into a pyplot
figure instead.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neurogshn.utils.io import atomic_path

#: Axis/colorbar label of every firing-rate quantity (rates are spikes per simulation step).
RATE_LABEL = "firing rate (spikes/step)"
#: Label of every simulation-time axis.
TIME_LABEL = "time step"
#: Colour map for firing rates (perceptually uniform, dark = silent).
RATE_CMAP = "viridis"
#: Colour of highlighted neurons / spikes.
HIGHLIGHT_COLOR = "#d62728"
#: Colour of ordinary spikes.
SPIKE_COLOR = "#1f1f1f"


def to_numpy(x: Any, name: str = "input") -> np.ndarray:
    """Convert a torch tensor (any device, with or without grad) or array-like to numpy."""
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    if hasattr(x, "numpy"):
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to a numeric array")
    return arr


class VizFigure(Figure):
    """A plain :class:`~matplotlib.figure.Figure` that Jupyter displays as a PNG.

    Figures made without ``pyplot`` have no backend to show them; ``_repr_png_`` lets IPython
    render one when it is a cell's value (Agg, like :func:`save_figure`).
    """

    def _repr_png_(self) -> bytes:

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return ``(figure, ax)``: ``ax`` itself and its figure, or a fresh figure with one axes."""
    if ax is not None:
        return ax.get_figure(root=True), ax
    fig = VizFigure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def new_figure(fig: Figure | None, figsize: tuple[float, float]) -> Figure:
    """Return ``fig`` as it is, or a fresh constrained-layout :class:`VizFigure`."""
    if fig is not None:
        return fig
    return VizFigure(figsize=figsize, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix, e.g. ``.png``)."""

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=os.path.splitext(str(path))[1].lstrip(".") or "png")


def render_rgb(fig: Figure) -> np.ndarray:
    """Render ``fig`` with Agg and return its pixels, ``H×W×3`` uint8 (used by tests too)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def check_time_first(spikes: np.ndarray, name: str, ndim: tuple[int, ...]) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``spikes.ndim`` is one of ``ndim``."""
    if spikes.ndim not in ndim:
        shapes = " or ".join({2: "T×M", 3: "T×N×D"}.get(n, f"{n}-d") for n in ndim)
        raise ValueError(f"{name} must be time first, {shapes}; got shape {spikes.shape}")
