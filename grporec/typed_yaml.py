"""YAML -> a typed dataclass tree: `a.b=value` overrides, and a check of every key and type.

The machinery under `grporec.config` (which holds grporec's own tree): an unknown key, a wrong type
or a missing required key is a `ConfigError` naming the key and where it came from (the file, or
the command line for an override); `dump_config` writes YAML that loads back to an equal tree.
Generic over the root dataclass, so a tool with its own tree (the benchmarks) uses it too.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from grporec.errors import UserError


class ConfigError(UserError):
    """A configuration problem; the message names the key and, when known, the file."""


def load_typed(path: str | Path, overrides: list[str] | None, cls: type, check=None) -> Any:
    """Read a YAML file, apply `a.b=value` overrides, and build a typed config.

    Args:
        path: YAML file.
        overrides: strings `section.key=value`; the value is parsed as YAML (`lr=1e-5` works).
        cls: the root dataclass.
        check: `check(config, source)`, run on the built config (value ranges), raising ConfigError.
    Returns:
        An instance of `cls`.
    Raises:
        ConfigError naming the key and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    for item in overrides or []:
        apply_override(raw, item, source=str(path))
    cli_keys = frozenset(item.partition("=")[0].strip() for item in overrides or [])
    source = Source(str(path), cli_keys)
    cfg = from_dict(cls, raw, source=source)
    if check is not None:
        check(cfg, source)
    return cfg


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a config's values came from: a file, and the keys that command-line overrides set."""

    path: str
    cli_keys: frozenset = frozenset()

    def __str__(self) -> str:
        return self.path


def origin(source, key: str) -> str:
    """'on the command line' for a key an override set, one inside a section it set, or a section an
    override created (`trian.lr=1` makes the unknown section `trian`), else 'in FILE'."""
    if isinstance(source, Source) and any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in source.cli_keys):
        return "on the command line"
    return f"in {source}"



def apply_override(raw: dict, item: str, source: str = "<overrides>") -> None:
    """Set `a.b.c=value` inside a nested dict (creating sections as needed)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: empty key component")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section (on the command line)")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, raw: Any, source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    where = prefix.rstrip(".") or "<root>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} ({origin(source, where)})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]} ({origin(source, prefix + unknown[0])}); valid keys under {where}: "
            f"{', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name in raw:
            value = raw[name]
            if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                # A partly given section keeps its own defaults (e.g. sft.train's), not the class's.
                value = {**_shallow_dict(f.default_factory()), **value}
            kwargs[name] = _check(hints[name], value, key, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = _check(hints[name], {}, key, source)
            else:
                raise ConfigError(f"missing required key {key} ({origin(source, key)})")
    return cls(**kwargs)


def _shallow_dict(obj: Any) -> dict:
    """A dataclass's fields as a dict, nested sections as dicts (lists copied)."""
    return {f.name: _shallow_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else
            (list(v) if isinstance(v, list) else v) for f in dataclasses.fields(obj)}


def _check(tp: Any, value: Any, key: str, source: str) -> Any:
    """Return `value` if it has type `tp` (with safe widenings), else raise naming `key`."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, prefix=key + ".")
    kind = typing.get_origin(tp)
    args = typing.get_args(tp)
    if kind in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(a, value, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches no type of {tp} ({origin(source, key)})")
    if kind is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)} ({origin(source, key)})")
        return value
    if kind is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r} ({origin(source, key)})")
        return [_check(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)] if args else value
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} ({origin(source, key)})")
        return {_check(args[0], k, key, source): _check(args[1], v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is float:
        # YAML 1.1 reads `1e-5` (no dot) as a string; accept numeric strings for float fields.
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a float, got bool {value!r} ({origin(source, key)})")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a float, got {type(value).__name__} {value!r} ({origin(source, key)})")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an int, got {type(value).__name__} {value!r} ({origin(source, key)})")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r} ({origin(source, key)})")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r} ({origin(source, key)})")
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported config type {tp} ({origin(source, key)})")


def dump_config(cfg: Any) -> str:
    """The config as YAML text; loading this text gives an equal config."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(dump_config(cfg))
