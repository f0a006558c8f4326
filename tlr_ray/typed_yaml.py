"""Map plain YAML data onto frozen dataclasses, with errors that name the file, the key and the fix.

One generic builder instead of a hand-written parser per section: every section of a sweep file gets
the same checks (unknown keys with the nearest valid one suggested, wrong types, missing keys).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A sweep file is wrong. The message names the file, the key path and how to fix it."""

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key = file, key
        super().__init__(f"{file}: {key or '<top level>'}: {message}")


def out_of_domain(file: str, key: str, value: Any, allowed: str, fix: str) -> ConfigError:
    """The error of a value outside its knob's domain: the value, what is allowed, and a fix."""
    shown = repr(value) if isinstance(value, str) else str(value)
    return ConfigError(file, key, f"{shown} is not allowed: must be {allowed}. Fix: {fix}")


def nearest(word: str, choices: typing.Iterable[str]) -> str:
    """' Did you mean 'x'?' or '' — appended to error messages."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def build(cls: type, data: Any, file: str, key: str = "") -> Any:
    """Build dataclass `cls` from `data` (a dict from YAML), recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, key, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for k in data:
        if k not in fields:
            raise ConfigError(file, _join(key, k), f"unknown key {k!r}.{nearest(str(k), fields)} "
                              f"Valid keys here: {', '.join(sorted(fields))}.")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], file, _join(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(file, _join(key, name), f"required key {name!r} is missing")
    return cls(**kwargs)


def convert(tp: Any, value: Any, file: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], value, file, key)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file, key)
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]  # a single value where a list is expected: be forgiving
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected a list, got {type(value).__name__}")
        return tuple(convert(args[0], v, file, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): convert(args[1], v, file, _join(key, str(k))) for k, v in value.items()}
    if tp is typing.Any:
        return value
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(file, key, f"{value!r} is not allowed.{nearest(str(value), map(str, args))} "
                              f"Choose one of: {', '.join(map(str, args))}.")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "5e-5" as a string
        except ValueError:
            pass
    if tp in (int, str, bool, float) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(file, key, f"expected {tp.__name__}, got {value!r}")
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
