"""Generic machinery for frozen, validated configuration sections.

A section is a frozen dataclass whose fields are declared with :func:`setting`
(bounds, choices, units) and whose cross-field rules live in ``check(prefix)``.
:func:`build_section` turns a plain mapping (parsed TOML) into such an object,
rejecting unknown keys and impossible values with a :class:`ConfigError` that
names the dotted key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["setting", "build_section", "section_to_dict"]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    unit: str = "",
    doc: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """Declare a configuration field with its bounds and documentation."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "unit": unit, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return "a list of " + ", ".join(_describe(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "nothing"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert a TOML value to the declared type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        for arg in typing.get_args(tp):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, value, _describe(tp))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, _describe(tp))
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, value, f"{len(args)} items ({_describe(tp)})")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(key, value, "nothing")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, value, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "a string")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # programming error


def _check_bounds(meta: Mapping[str, Any], value: Any, key: str) -> None:
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    if value is None:  # an optional setting left unset (a stage key that inherits)
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(key, value, "one of " + ", ".join(repr(c) for c in meta["choices"]))
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if meta.get("ge") is not None and not v >= meta["ge"]:
            raise ConfigError(key, value, f"a value >= {meta['ge']}{unit}")
        if meta.get("gt") is not None and not v > meta["gt"]:
            raise ConfigError(key, value, f"a value > {meta['gt']}{unit}")
        if meta.get("le") is not None and not v <= meta["le"]:
            raise ConfigError(key, value, f"a value <= {meta['le']}{unit}")
        if meta.get("lt") is not None and not v < meta["lt"]:
            raise ConfigError(key, value, f"a value < {meta['lt']}{unit}")


def _table_list_item(tp: Any) -> type | None:
    """The section class of a ``tuple[Section, ...]`` field (a TOML array of tables), else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def build_section(cls: type, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build a frozen section dataclass from a mapping, validating everything.

    Parameters
    ----------
    cls : type
        A dataclass whose fields are declared with :func:`setting` or are
        themselves section dataclasses (nested TOML tables).
    data : mapping or None
        Parsed TOML for this section; missing keys take their defaults.
    prefix : str
        Dotted path of this section, used in error messages.

    Raises
    ------
    ConfigError
        For an unknown key, a value of the wrong type, a value out of bounds,
        or a violated cross-field rule (the section's ``check`` method).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{prefix}{key}", data[key], "one of the known keys: " + ", ".join(sorted(fields))
            )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            sub = data.get(name, {})
            if not isinstance(sub, Mapping):
                raise ConfigError(key, sub, f"a table [{key}]")
            if f.default_factory is not dataclasses.MISSING:
                # a section whose default differs from its class defaults: the file
                # overrides that default key by key
                sub = {**section_to_dict(f.default_factory()), **sub}
            kwargs[name] = build_section(tp, sub, f"{key}.")
            continue
        if name not in data:
            continue  # default applies
        item = _table_list_item(tp)
        if item is not None:  # a list of tables ([[key]] in TOML), each a section of its own
            rows = data[name]
            if not isinstance(rows, (list, tuple)) or not all(isinstance(r, Mapping) for r in rows):
                raise ConfigError(key, rows, f"a list of tables [[{key}]]")
            kwargs[name] = tuple(build_section(item, r, f"{key}[{i}].") for i, r in enumerate(rows))
            continue
        value = _coerce(tp, data[name], key)
        _check_bounds(f.metadata, value, key)
        kwargs[name] = value
    obj = cls(**kwargs)
    # defaults are checked too: a default can be impossible next to a user value
    for name, f in fields.items():
        if not dataclasses.is_dataclass(hints[name]):
            _check_bounds(f.metadata, getattr(obj, name), f"{prefix}{name}")
    check = getattr(obj, "check", None)
    if check is not None:
        check(prefix)
    return obj


def section_to_dict(obj: Any) -> dict:
    """Plain-dict view of a section (for logging and round trips to TOML)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = section_to_dict(value)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            # a list of tables: unset optional keys (None) are left out, as in the file
            out[f.name] = [{k: v for k, v in section_to_dict(v).items() if v is not None} for v in value]
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else ("nan" if v != v else
                                                                                  ("inf" if v > 0 else "-inf"))
    return repr(int(v))


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text of nested dicts of scalars and lists (what :func:`section_to_dict` returns)."""
    lines: list[str] = []

    def is_tables(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)

    def table(name: str, d: Mapping[str, Any], header: str = "") -> None:
        lines.append(header or f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in d.items()
                     if v is not None and not isinstance(v, Mapping) and not is_tables(v))
        for k, v in d.items():
            if isinstance(v, Mapping):
                table(f"{name}.{k}", v)
            elif is_tables(v):
                for row in v:
                    table(f"{name}.{k}", row, f"[[{name}.{k}]]")

    for name, d in data.items():
        table(name, d)
    return "\n".join(lines) + "\n"
