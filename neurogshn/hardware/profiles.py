"""Energy profiles: per-operation constants with their sources (``hardware/profiles/*.json``).

Lookup order: the copy shipped inside the wheel (``neurogshn/_profiles``, force-included by
``pyproject.toml``), read with :mod:`importlib.resources`; then the repository's
``hardware/profiles`` (editable installs and source checkouts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from neurogshn.errors import ConfigError, InputFileError

REQUIRED = {
    "loihi1": (
        "synaptic_spike_op",
        "neuron_update_active",
        "neuron_update_inactive",
        "spike_within_tile",
    ),
    "cmos45nm": ("mac", "ac"),
}


@dataclass(frozen=True)
class EnergyProfile:
    """One hardware profile.

    Attributes:
        name: profile name (``loihi1``, ``cmos45nm``).
        constants: energy per operation in picojoules.
        citation: the source of the constants.
        path: where the profile was read from.
    """

    name: str
    constants: dict[str, float]
    citation: str
    doi: str
    notes: str
    path: str

    def __getitem__(self, key: str) -> float:
        return self.constants[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "constants_pJ": self.constants,
            "source": self.citation,
            "doi": self.doi,
            "file": self.path,
        }


def _repo_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "hardware" / "profiles"


def profile_dirs() -> list[Any]:
    """Candidate profile directories, in lookup order (``Traversable`` or ``Path``)."""
    dirs: list[Any] = []
    try:
        packaged = resources.files("neurogshn") / "_profiles"
        if packaged.is_dir():
            dirs.append(packaged)
    except (ModuleNotFoundError, TypeError):
        pass
    repo = _repo_dir()
    if repo.is_dir():
        dirs.append(repo)
    return dirs


def parse_profile(text: str, where: str) -> EnergyProfile:
    """Parse and validate one profile's JSON text (``where`` names it in errors)."""
    try:
        data = json.loads(text)
        name = str(data["name"])
        units = data.get("units")
        citation = str(data["source"]["citation"])
        constants = {str(k): float(v) for k, v in data["constants"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(where, f"invalid energy profile ({exc})") from exc
    if units != "pJ":
        raise InputFileError(where, f"units must be 'pJ', got {units!r}")
    if not citation.strip():
        raise InputFileError(where, "a profile must cite its source")
    missing = [k for k in REQUIRED.get(name, ()) if k not in constants]
    if missing:
        raise InputFileError(where, f"profile {name!r} lacks constants {missing}")
    if any(v < 0 for v in constants.values()):
        raise InputFileError(where, "energies must be non-negative")
    src = data["source"]
    return EnergyProfile(
        name, constants, citation, str(src.get("doi", "")), str(src.get("notes", "")), where
    )


def load_profile(name: str) -> EnergyProfile:
    """Load profile ``name`` (e.g. ``"loihi1"``) from the first directory that has it.

    Raises:
        ConfigError: no such profile anywhere.
    """
    for d in profile_dirs():
        f = d / f"{name}.json"
        if f.is_file():
            return parse_profile(f.read_text(), str(f))
    raise ConfigError(
        f"no energy profile {name!r} (looked in {[str(d) for d in profile_dirs()]}); "
        f"available: {available_profiles()}"
    )


def available_profiles() -> list[str]:
    names: set[str] = set()
    for d in profile_dirs():
        names.update(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json"))
    return sorted(names)
