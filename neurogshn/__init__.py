"""neurogshn: Graph Spiking Hybrid Networks for vision-language alignment.

Data flow (one subpackage per stage): ``data`` → ``segmentation`` → ``features`` → ``graph`` →
``model`` → ``losses`` → ``training`` → ``tasks`` → ``hardware`` → ``viz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neurogshn._version import __version__

if TYPE_CHECKING:
    from neurogshn.model.gshn import GSHN

__all__ = ["GSHN", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import neurogshn` (and `neurogshn --help`) stays cheap.
    if name == "GSHN":
        from neurogshn.model.gshn import GSHN

        return GSHN
    raise AttributeError(f"module 'neurogshn' has no attribute {name!r}")
