"""Checks a configuration, every key at every depth, before anything starts.

A typo deep in a table (``drift = { alpah = 0.01 }`` in ``[models.fraud]``) used to
pass start-up and then dead-letter every event of that model. Here the whole
tree is walked once against the settings definitions (the dataclasses of
:mod:`streams.config` and :mod:`detectors.settings`, the signatures of the
detectors the nested tables configure, the sink options), and every problem is
reported at once, as ``file: key.path: what is wrong (did you mean ...)``.

>>> from streams.config import Settings
>>> problems("driftline.toml", {"defaults": {"drift": {"alpah": 0.01}}, "web_prot": 1})
["driftline.toml: defaults.drift.alpah: unknown key (did you mean 'alpha'?)", "driftline.toml: web_prot: unknown key (did you mean 'web_port'?)"]
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(ValueError):
    """One or more configuration problems, one line each (the CLI prints them and exits 2)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


# -- what a value may be ---------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A table with fixed keys; ``fields`` maps each key to its spec."""
    fields: dict


@dataclass(frozen=True)
class MapOf:
    """A table with free keys (model names, feature names), every value of one spec."""
    value: Any


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class OneOf:
    choices: tuple


@dataclass(frozen=True)
class Custom:
    """A check of its own: ``check(value) -> problem or None``."""
    check: Callable[[Any], str | None]
    what: str


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a table", list: "an array", tuple: "an array"}


def _spec_of_annotation(tp) -> Any:
    """A dataclass field's or parameter's annotation as a spec; ``X | None`` allows X (TOML has no null)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _spec_of_annotation(args[0]) if len(args) == 1 else Any
    origin = typing.get_origin(tp)
    return origin if origin in (list, tuple, dict) else tp


def table_of_dataclass(cls, overrides: dict | None = None, exclude=()) -> Table:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _spec_of_annotation(hints[f.name]) for f in dataclasses.fields(cls) if f.name not in exclude}
    return Table({**fields, **(overrides or {})})


def table_of_signature(func, extra: dict | None = None) -> Table:
    """The keyword parameters of a constructor, typed by annotation or else by default value."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:   # annotations that do not evaluate: fall back to the defaults' types
        hints = {}
    fields = {}
    for name, param in inspect.signature(func).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in hints:
            fields[name] = _spec_of_annotation(hints[name])
        elif param.default is not inspect.Parameter.empty and param.default is not None:
            fields[name] = float if type(param.default) is int else type(param.default)
        else:
            fields[name] = Any
    return Table({**fields, **(extra or {})})


# -- walking ---------------------------------------------------------------------------------
def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(sorted(known))})" if len(known) <= 12 else ""


def _type_ok(value, tp) -> bool:
    if tp is Any or tp is object:
        return True
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, tp) if isinstance(tp, type) else True


def check_value(value, spec, path: str, out: list[str]) -> None:
    """Append a ``path: problem`` line to ``out`` for every problem in ``value``."""
    if isinstance(spec, Table):
        if not isinstance(value, dict):
            out.append(f"{path}: must be a table, got {_shown(value)}")
            return
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in spec.fields:
                out.append(f"{sub}: unknown key{_suggest(str(key), spec.fields)}")
            else:
                check_value(item, spec.fields[key], sub, out)
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            out.append(f"{path}: must be a table, got {_shown(value)}")
            return
        for key, item in value.items():
            check_value(item, spec.value, f"{path}.{key}", out)
    elif isinstance(spec, ListOf):
        if not isinstance(value, (list, tuple)):
            out.append(f"{path}: must be an array, got {_shown(value)}")
            return
        for i, item in enumerate(value):
            check_value(item, spec.item, f"{path}[{i}]", out)
    elif isinstance(spec, OneOf):
        if value not in spec.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(f"{path}: {value!r} is not one of {', '.join(map(repr, spec.choices))}{hint}")
    elif isinstance(spec, Custom):
        problem = spec.check(value)
        if problem:
            out.append(f"{path}: {problem}")
    elif not _type_ok(value, spec):
        out.append(f"{path}: must be {_TYPE_NAMES.get(spec, getattr(spec, '__name__', str(spec)))}, "
                   f"got {_shown(value)}")


def _shown(value) -> str:
    text = repr(value)
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table",
            list: "array"}.get(type(value), type(value).__name__)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def problems(source: str, data: dict) -> list[str]:
    """Every problem in a configuration tree, each line prefixed with ``source``."""
    from streams.config_schema import deep_checks, settings_table

    out: list[str] = []
    check_value(data, settings_table(), "", out)
    if not out:   # types are right: now let the parts judge their values
        out.extend(deep_checks(data))
    return [f"{source}: {line}" for line in out]


def check(source: str, data: dict) -> None:
    """Raise :class:`ConfigError` listing every problem in ``data``."""
    found = problems(source, data)
    if found:
        raise ConfigError(found)
