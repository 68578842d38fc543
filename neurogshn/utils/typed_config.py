"""JSON values checked against dataclass annotations, with errors that name the field.

Used by every config that is read from a file (:class:`~neurogshn.training.config.TrainConfig`,
:class:`~neurogshn.model.config.GSHNConfig`): ``"embed_dim": "thirty-two"`` becomes
``<file>: embed_dim must be int, got 'thirty-two'`` instead of a traceback from deep inside.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from typing import Any

from neurogshn.errors import ConfigError


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def strip_optional(tp: Any) -> Any:
    """``X`` for ``X | None``; any other annotation unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def key_paths(cls: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a (nested) dataclass config, sections included."""
    out = []
    for name, tp in type_hints(cls).items():
        path = f"{prefix}{name}"
        out.append(path)
        sub = strip_optional(tp)
        if dataclasses.is_dataclass(sub):
            out += key_paths(sub, path + ".")
    return out


def closest_keys(wrong: str, cls: Any, limit: int = 3) -> list[str]:
    """Valid dotted keys of ``cls`` closest to the unknown key ``wrong``: keys that end in the
    same field name first (``optim.epochs`` → ``schedule.epochs``), then spelling neighbours
    of the whole path and of its last part."""
    paths = key_paths(cls)
    leaf = wrong.rsplit(".", 1)[-1]
    same_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == leaf and p != wrong]
    spelled = difflib.get_close_matches(wrong, paths, n=limit, cutoff=0.6)
    by_leaf = {p.rsplit(".", 1)[-1]: p for p in paths}
    near_leaf = [by_leaf[k] for k in difflib.get_close_matches(leaf, list(by_leaf), n=limit)]
    return list(dict.fromkeys(same_leaf + spelled + near_leaf))[:limit]


def did_you_mean(wrong: str, cls: Any) -> str:
    """`` (did you mean a or b?)`` for :func:`closest_keys`, or ``""`` when nothing is close."""
    keys = closest_keys(wrong, cls)
    return f" (did you mean {' or '.join(keys)}?)" if keys else ""


def unknown_key_paths(data: Any, cls: Any, prefix: str = "") -> list[str]:
    """Dotted paths of ``data``'s keys that ``cls`` (a nested dataclass config) does not have;
    free-form ``dict`` fields are not looked into."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return []
    hints = type_hints(cls)
    out = []
    for key, value in data.items():
        if key not in hints:
            out.append(f"{prefix}{key}")
            continue
        out += unknown_key_paths(value, strip_optional(hints[key]), f"{prefix}{key}.")
    return out


def build_dataclass(cls: Any, data: Any, prefix: str, source: str) -> Any:
    """``cls(**data)`` with every value checked against its field's annotation (``prefix``
    names the section in messages, ``source`` the file or option)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{source}: {where} must be an object, got {data!r}")
    hints = type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        hints_text = "".join(did_you_mean(u, cls) for u in unknown[:1])
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + u for u in unknown)} "
            f"(known in {where}: {', '.join(sorted(hints))}){hints_text}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(hints[name], value, f"{prefix}{name}", source)
    return cls(**kwargs)


def coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key} = {value!r} does not match {type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key + ".", source)
    if tp is Any:
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise ConfigError(f"{source}: {key} must have {len(items)} items, got {value!r}")
        return tuple(
            coerce(t, v, f"{key}[{i}]", source) for i, (t, v) in enumerate(zip(items, value))
        )
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list of {type_name(item)}, got {value!r}")
        return [coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be an object, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - every field above has one of these types
        raise ConfigError(f"{source}: {key}: unsupported field type {tp!r}")
    raise ConfigError(f"{source}: {key} must be {type_name(tp)}, got {value!r}")


def type_name(tp: Any) -> str:
    """A readable name of an annotation, for messages."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
