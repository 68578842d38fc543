"""neurogshn: Graph Spiking Hybrid Networks for vision-language alignment.

Data flow (one subpackage per stage): ``data`` → ``segmentation`` → ``features`` → ``graph`` →
``model`` → ``losses`` → ``training`` → ``tasks`` → ``hardware`` → ``viz``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from neurogshn._version import __version__

# On AVX-512 CPUs MKL's results depend on memory alignment unless it is asked for strict
# reproducibility, and a resumed training run then drifts from an uninterrupted one. MKL reads
# this at its first call, so it is set here, on import, unless the user chose a mode.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

if TYPE_CHECKING:
    from neurogshn.model.gshn import GSHN

__all__ = ["GSHN", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import neurogshn` (and `neurogshn --help`) stays cheap.
    if name == "GSHN":
        from neurogshn.model.gshn import GSHN

        return GSHN
    raise AttributeError(f"module 'neurogshn' has no attribute {name!r}")
