"""Dataclass configs: defaults, then a YAML file, then ``key=value`` overrides, type-checked from the annotations.

A config is an ordinary (optionally nested, optionally frozen) dataclass whose fields carry their documentation in
``field(metadata={"help": ...})``; ``config_help`` turns that into ``--help`` text. Values are checked against the
field annotations, and every mistake a user can make (wrong type, unknown key, value outside a ``Literal``) raises
a one-line ``ValueError`` that says which key, what was expected and where the bad value came from. Range checks
belong to the dataclass's own ``__post_init__``; its ``ValueError`` propagates unchanged.

Example:
    >>> @dataclasses.dataclass
    ... class Config:
    ...     inner_lr: float = field(default=0.1, metadata={"help": "step size of the inner loop"})
    >>> load_config(Config, None, ["inner_lr=0.5"]).inner_lr
    0.5
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from metarl.training.io import atomic_write_text

__all__ = [
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]

T = TypeVar("T")

_NONE_TYPE = type(None)


class _Mismatch(Exception):
    """Internal: a value does not fit an annotation (turned into a user-facing message by the caller)."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _describe(tp: Any) -> str:
    """A phrase for error messages: 'a float', 'a list of integers', "one of 'sgd', 'adam'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a float"
    if tp is str:
        return "a string"
    if tp is Path or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
        return "a path"
    if tp is Any:
        return "any value"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not _NONE_TYPE]
        text = " or ".join(parts)
        return text + " or null" if _NONE_TYPE in args else text
    if origin in (list, tuple, set, frozenset, Iterable, typing.Sequence):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} items (" + ", ".join(_describe(a) for a in args) + ")"
        inner = _describe(args[0]) if args else "values"
        return "a list of " + _plural(inner)
    if origin in (dict, Mapping):
        return "a mapping" + (f" of {_plural(_describe(args[1]))}" if len(args) == 2 else "")
    if _is_dataclass_type(tp):
        return f"a mapping (section {tp.__name__})"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _plural(phrase: str) -> str:
    for article in ("an ", "a "):
        if phrase.startswith(article):
            noun = phrase[len(article) :]
            head, _, tail = noun.partition(" ")
            return head + "s" + (" " + tail if tail else "")
    return phrase


def _type_name(tp: Any) -> str:
    """A compact rendering of an annotation for help text: ``tuple[int, ...]``, ``float | None``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is _NONE_TYPE else _type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, raw: str | None) -> Any:
    """Convert ``value`` to annotation ``tp`` or raise ``_Mismatch``. ``raw`` is the override text, if any."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE_TYPE in args:
            return None
        for option in args:
            if option is _NONE_TYPE:
                continue
            try:
                return _coerce(value, option, raw)
            except _Mismatch:
                continue
        raise _Mismatch
    if value is None:
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads 1e-3 as a string; accept any text Python reads as a float.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:  # an override such as name=2024 or tag=yes: keep what was typed
            return raw
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    if tp is Path or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise _Mismatch
    if origin is typing.Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        raise _Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value in (member.value, member.name):
                return member
        raise _Mismatch
    if origin in (list, tuple, set, frozenset, Iterable, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_coerce(v, a, None) for v, a in zip(value, args, strict=True))
        items = [_coerce(v, args[0], None) if args else v for v in value]
        container = origin if origin in (tuple, set, frozenset) else list
        return container(items)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch
        key_tp, val_tp = args if len(args) == 2 else (Any, Any)
        return {_coerce(k, key_tp, None): _coerce(v, val_tp, None) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value  # an annotation we cannot check (e.g. a TypeVar): accept as is


def _suggest(name: str, valid: Iterable[str], prefix: str = "") -> str:
    valid = sorted(f"{prefix}{v}" for v in valid)
    name = f"{prefix}{name}"
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}"


def _source_of(dotted: str, sources: Mapping[str, str], default: str) -> str:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in sources:
            return sources[prefix]
    return default


def _build(
    cls: type[T],
    base: T | None,
    data: Mapping[str, Any],
    sources: Mapping[str, str],
    raws: Mapping[str, str],
    default_source: str,
    prefix: str = "",
) -> T:
    """Instantiate ``cls`` from ``base`` (or the defaults) updated with the checked values in ``data``."""
    if not isinstance(data, Mapping):
        where = _source_of(prefix.rstrip("."), sources, default_source)
        name = f"config section '{prefix.rstrip('.')}'" if prefix else "the config"
        raise ValueError(f"{name} must be a mapping of key: value, got {data!r} (from {where})")
    fields, hints = _init_fields(cls), _field_types(cls)
    updates: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        where = _source_of(dotted, sources, default_source)
        if key not in fields:
            raise ValueError(
                f"unknown config key '{dotted}' (from {where}){_suggest(str(key), fields, prefix)}"
            )
        tp = hints.get(key, Any)
        if _is_dataclass_type(tp):
            current = getattr(base, key) if base is not None else _default_of(fields[key])
            if isinstance(value, tp):
                updates[key] = value
                continue
            nested_base = current if isinstance(current, tp) else None
            updates[key] = _build(tp, nested_base, value, sources, raws, default_source, dotted + ".")
            continue
        try:
            updates[key] = _coerce(value, tp, raws.get(dotted))
        except _Mismatch:
            shown = raws.get(dotted, value)
            raise ValueError(
                f"config key '{dotted}' must be {_describe(tp)}, got {shown!r} (from {where})"
                + _literal_hint(value, tp)
            ) from None
    if base is not None:
        return dataclasses.replace(base, **updates)  # runs __init__ and __post_init__ again
    missing = [
        name
        for name, f in fields.items()
        if name not in updates
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        keys = ", ".join(f"'{prefix}{m}'" for m in missing)
        raise ValueError(f"config key {keys} has no default: set it in the config file or with key=value")
    return cls(**updates)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _literal_hint(value: Any, tp: Any) -> str:
    choices = [str(a) for a in typing.get_args(tp)] if typing.get_origin(tp) is typing.Literal else []
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5) if choices else []
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_overrides(overrides: Iterable[str]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Parse ``"a.b=value"`` strings into a nested dict (values read with ``yaml.safe_load``).

    Returns:
        ``(nested values, {dotted key: source description}, {dotted key: raw text})``.

    Raises:
        ValueError: an override is not of the form ``key=value``.
    """
    nested: dict[str, Any] = {}
    sources: dict[str, str] = {}
    raws: dict[str, str] = {}
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(
                f"override {item!r} must look like key=value (or section.key=value), e.g. inner_lr=0.1"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text  # not YAML (e.g. an unbalanced bracket): keep the text; type checking will judge it
        parts = key.split(".")
        node = nested
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    raise ValueError(
                        f"override {item!r} conflicts with an earlier override of '{'.'.join(parts[: i + 1])}'"
                    )
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
        sources[key] = f"--set {item}"
        raws[key] = text
    return nested, sources, raws


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"config file {target} not found")
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"config file {target} is not valid YAML: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {target} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    base: T | None = None,
) -> T:
    """Build a config: the dataclass defaults (or ``base``), then the YAML file, then ``key=value`` overrides.

    Args:
        cls: The config dataclass (may contain nested dataclasses, set with ``section.key=value``).
        path: Optional YAML file with a (nested) mapping of keys to values.
        overrides: Strings ``"key=value"``; the value is read with ``yaml.safe_load`` (``[64, 64]``, ``true``, ``null``).
        base: Start from this instance instead of the defaults (e.g. a resumed run's config).

    Returns:
        An instance of ``cls``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid YAML, an unknown key, a value of the wrong type, or a range check in ``__post_init__``.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    default_source = f"file {path}" if path is not None else "defaults"
    nested, sources, raws = parse_overrides(overrides)
    data = _merge(data, nested)
    return _build(cls, base, data, sources, raws, default_source)


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a (nested) dict such as ``config_to_dict`` returns, with the same checks as ``load_config``."""
    return _build(cls, None, data, {}, {}, "dict")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy / torch scalars
        return value.item()
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts/lists/scalars (YAML/JSON serialisable), in field order."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(cfg).__name__}")
    return _plain(cfg)


def save_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML atomically; ``load_config(type(cfg), path)`` reads it back equal."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None, allow_unicode=True)
    return atomic_write_text(path, text)


def config_help(cls: type, prefix: str = "") -> str:
    """One line per key: ``name (type, default value): help``, nested sections as ``section.key``."""
    lines: list[str] = []
    hints = _field_types(cls)
    for name, f in _init_fields(cls).items():
        tp = hints.get(name, Any)
        default = _default_of(f)
        if _is_dataclass_type(tp):
            help_text = f.metadata.get("help", "")
            lines.append(f"  {prefix}{name}: section{' - ' + help_text if help_text else ''}")
            lines.append(config_help(tp, f"{prefix}{name}."))
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            shown = "required"
        else:
            shown = f"default {yaml.safe_dump(_plain(default), default_flow_style=True).strip().removesuffix('...').strip()}"
        help_text = f.metadata.get("help", "")
        lines.append(f"  {prefix}{name} ({_type_name(tp)}, {shown}){': ' + help_text if help_text else ''}")
    return "\n".join(lines)
