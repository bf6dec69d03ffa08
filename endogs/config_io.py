"""Dataclass configs to and from plain dicts / YAML, strictly (unknown keys are errors).

A config class may define three hooks:

- ``migrate_dict(data, where) -> dict`` (classmethod): rewrite an older layout before loading;
- ``resolve_type(data, where) -> type`` (classmethod): the class to load ``data`` as (a union
  of configs told apart by a key, e.g. the deformation fields by ``kind``);
- ``merge_base(override) -> dict`` (method): what :func:`merge` applies ``override`` to (e.g. a
  new ``kind`` starts from that kind's defaults).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from endogs.errors import ConfigError


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples become lists, paths strings) suitable for YAML/JSON."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (Union, getattr(types, "UnionType", Union)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value)) if args else tuple(value)
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, where) for v in value] if args else list(value)
    if origin in (dict, typing.Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``; missing keys keep their defaults, unknown keys fail."""
    if hasattr(cls, "migrate_dict"):
        data = cls.migrate_dict(data, where)
    if hasattr(cls, "resolve_type"):
        cls = cls.resolve_type(data, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def merge(cfg: Any, overrides: Mapping[str, Any], where: str = "config") -> Any:
    """``cfg`` with nested ``overrides`` applied (strict keys)."""
    base = to_dict(cfg)

    def deep(a: dict, b: Mapping, path: str, obj: Any) -> dict:
        if hasattr(type(obj), "migrate_dict"):
            b = type(obj).migrate_dict(b, path)
        if hasattr(obj, "merge_base"):
            a = obj.merge_base(b)
        out = dict(a)
        for k, v in b.items():
            if k not in a:
                raise ConfigError(f"{path}: unknown key {k}; valid: {', '.join(sorted(a))}")
            sub = getattr(obj, k, None) if not isinstance(obj, Mapping) else None
            out[k] = deep(a[k], v, f"{path}.{k}", sub) if isinstance(a[k], dict) and isinstance(v, Mapping) and a[k] else v
        return out

    return from_dict(type(cfg), deep(base, overrides, where, cfg), where)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (invalid UTF-8); expected a YAML mapping") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a YAML file") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML mapping from ``text`` (``where`` names it in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return data
