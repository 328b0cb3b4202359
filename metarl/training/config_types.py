"""Checking config values against dataclass field annotations (used by ``metarl.training.config``).

Supports ``bool``, ``int`` (never a bool), ``float`` (ints and numeric strings such as YAML 1.1's ``1e-3``
accepted), ``str``, ``pathlib.Path``, ``Literal[...]``, ``Enum``, ``X | None`` and other unions, ``list[X]``,
``tuple[X, ...]``, fixed-length ``tuple[X, Y]``, ``set``, ``dict[K, V]`` and ``Any``; nested dataclasses are
handled by the config builder itself.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import math
import numbers
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Mismatch",
    "coerce_value",
    "describe_type",
    "field_types",
    "init_fields",
    "is_dataclass_type",
    "type_name",
]

_NONE_TYPE = type(None)
_SEQUENCE_ORIGINS = (list, tuple, set, frozenset, Iterable, Sequence)


class Mismatch(Exception):
    """A value does not fit an annotation; the config builder turns it into a message naming key and source."""


def is_dataclass_type(tp: Any) -> bool:
    """Whether ``tp`` is a dataclass type (not an instance)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields.

    String annotations (``from __future__ import annotations``) are evaluated in the class's module, with the
    names of ``typing``, ``collections.abc`` and ``pathlib.Path`` available as a fallback.

    Raises:
        TypeError: an annotation names something that is not importable from the class's module (e.g. a
            class defined inside a function), so its values could not be checked.
    """
    try:
        return typing.get_type_hints(cls)
    except Exception:
        pass
    namespace: dict[str, Any] = {**vars(typing), **vars(collections.abc), "Path": Path}
    module = sys.modules.get(cls.__module__)
    if module is not None:
        namespace.update(vars(module))
    hints = {}
    for f in dataclasses.fields(cls):
        annotation = f.type
        if isinstance(annotation, str):
            try:
                annotation = eval(
                    annotation, namespace, dict(vars(cls))
                )  # what get_type_hints does, per field
            except Exception as exc:
                raise TypeError(
                    f"cannot resolve the annotation {f.type!r} of config field {cls.__qualname__}.{f.name} "
                    f"({type(exc).__name__}: {exc}); define the names it uses at module level"
                ) from None
        hints[f.name] = annotation
    return hints


def init_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields a config file may set: those that are arguments of ``__init__``."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def describe_type(tp: Any) -> str:
    """A phrase for error messages: 'a float', 'a list of integers', "one of 'sgd', 'adam'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite number"
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
        parts = [describe_type(a) for a in args if a is not _NONE_TYPE]
        text = " or ".join(parts)
        return text + " or null" if _NONE_TYPE in args else text
    if origin in _SEQUENCE_ORIGINS:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} items (" + ", ".join(describe_type(a) for a in args) + ")"
        inner = describe_type(args[0]) if args else "values"
        return "a list of " + _plural(inner)
    if origin in (dict, Mapping):
        return "a mapping" + (f" of {_plural(describe_type(args[1]))}" if len(args) == 2 else "")
    if is_dataclass_type(tp):
        return f"a mapping (section {tp.__name__})"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _plural(phrase: str) -> str:
    for article in ("an ", "a "):
        if phrase.startswith(article):
            noun = phrase[len(article) :]
            head, _, tail = noun.partition(" ")
            return head + "s" + (" " + tail if tail else "")
    return phrase


def type_name(tp: Any) -> str:
    """A compact rendering of an annotation for help text: ``tuple[int, ...]``, ``float | None``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is _NONE_TYPE else type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def coerce_value(value: Any, tp: Any, raw: str | None) -> Any:
    """Convert ``value`` to annotation ``tp`` or raise ``Mismatch``. ``raw`` is the override text, if any."""
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
                return coerce_value(value, option, raw)
            except Mismatch:
                continue
        raise Mismatch
    if value is None:
        raise Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise Mismatch
    if tp is float:
        # PyYAML (YAML 1.1) reads 1e-3 as a string; accept any text Python reads as a float.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise Mismatch from None
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise Mismatch
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            raise Mismatch from None
        if not math.isfinite(number):  # inf and nan are never a setting (null means 'none' where allowed)
            raise Mismatch
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:  # an override such as name=2024 or tag=yes: keep what was typed
            return raw
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise Mismatch
    if tp is Path or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise Mismatch
    if origin is typing.Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        raise Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value in (member.value, member.name):
                return member
        raise Mismatch
    if origin in _SEQUENCE_ORIGINS:
        if not isinstance(value, (list, tuple)):
            raise Mismatch
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise Mismatch
            return tuple(coerce_value(v, a, None) for v, a in zip(value, args, strict=True))
        items = [coerce_value(v, args[0], None) if args else v for v in value]
        container = origin if origin in (tuple, set, frozenset) else list
        return container(items)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise Mismatch
        key_tp, val_tp = args if len(args) == 2 else (Any, Any)
        return {coerce_value(k, key_tp, None): coerce_value(v, val_tp, None) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise Mismatch
    return value  # an annotation we cannot check (e.g. a TypeVar): accept as is
