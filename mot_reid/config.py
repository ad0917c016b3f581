"""The one config loader: YAML recipe files -> dataclasses, with `--set key=value` overrides.

A recipe may inherit another with `_base_: other.yaml` (path relative to the recipe), the way
fast-reid recipes do, so each ablation row is a small file changing a few keys. Every key is
checked against the dataclass: an unknown key or a value of the wrong type is a UserError.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mot_reid import atomic
from mot_reid.errors import UserError
from trackers.config import RangeError

T = TypeVar("T")


def configs_dir() -> Path:
    """The shipped `configs/` folder: the repository's own in a checkout or editable install,
    package data `mot_reid.configs` in a wheel install."""
    source_tree = Path(__file__).resolve().parents[1] / "configs"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("mot_reid.configs")))


def resolve_config_path(name_or_path: str | os.PathLike, kind: str) -> Path:
    """A path to an existing YAML file, or a shipped recipe name such as `strongsort` (kind `tracker`)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        return path
    shipped = configs_dir() / kind / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in (configs_dir() / kind).glob("*.yaml"))
    raise UserError(f"unknown {kind} config {str(name_or_path)!r}; choose one of {', '.join(names)} or a YAML path")


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping with `_base_` inheritance resolved (child keys win, nested dicts merge)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of keys to values")
    base = data.pop("_base_", None)
    if base is None:
        return data
    return merge(read_yaml(path.parent / base), data)


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(pairs: list[str] | None) -> dict:
    """`["a.b=1", "c=x"]` -> `{"a": {"b": 1}, "c": "x"}`; values are parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: conflicts with another override")
        node[parts[-1]] = value
    return out


def build(cls: type[T], data: dict | None, where: str = "") -> T:
    """Instantiate dataclass `cls` from a nested mapping, checking every key and value type."""
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"config section {where or cls.__name__!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            raise UserError(f"unknown config key {name!r}; valid keys here: {', '.join(fields)}")
        kwargs[key] = _coerce(hints[key], value, name)
    try:
        return cls(**kwargs)
    except RangeError as exc:
        name = f"{where}.{exc.key}" if where else exc.key
        raise UserError(f"config key {name!r} must be {exc.text}, got {exc.value!r}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid config {where or cls.__name__}: {exc}") from None


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, name)
    if origin in (typing.Union, types.UnionType):
        # `none` is accepted for null, as users write `--set loss.margin=none` (YAML reads it as text).
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() == "none")):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, name)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if len(errors) == 1 else f"config key {name!r}: bad value {value!r}")
    if origin is typing.Literal:
        if isinstance(value, bool) and all(isinstance(a, str) for a in args):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if value not in args:
            raise UserError(f"config key {name!r} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {name!r} expects a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"config key {name!r} expects {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, name) for a, v in zip(args, value, strict=True))
        item = args[0] if args else Any
        return origin(_coerce(item, v, name) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {name!r} expects a mapping, got {value!r}")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {name!r} expects true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {name!r} expects a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {name!r} expects an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"config key {name!r} expects text, got {value!r}")
        return str(value)
    return value


def load(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, updated by the YAML file at `path` (if any), then by `--set` overrides."""
    data = read_yaml(path) if path is not None else {}
    return build(cls, merge(data, parse_overrides(overrides)))


def to_dict(cfg) -> dict:
    """Plain, YAML/JSON-serialisable form of a config dataclass (tuples become lists)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


def save(cfg, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically) so a result can be reproduced."""
    path = Path(path)
    atomic.write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path
