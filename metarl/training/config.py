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
import reprlib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from metarl.errors import MissingFileError, UserError
from metarl.training.config_types import (
    Mismatch,
    coerce_value,
    describe_type,
    field_types,
    init_fields,
    is_dataclass_type,
    type_name,
)
from metarl.training.io import atomic_write_text

__all__ = [
    "RESUMABLE_KEYS",
    "RUN_FIELDS",
    "check_resume_overrides",
    "config_drift",
    "check_declared_bounds",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "load_config",
    "doc",
    "parse_overrides",
    "read_config_file",
    "run_field",
    "save_config",
    "updated_config",
]

T = TypeVar("T")


def _suggest(name: str, valid: Iterable[str], prefix: str = "") -> str:
    # Match bare names: a shared "section." prefix would make every key of the section look similar.
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
    return f"{hint} Valid keys: {', '.join(prefix + v for v in valid)}"


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
        raise UserError(f"{name} must be a mapping of key: value, got {_short(data)} (from {where})")
    fields, hints = init_fields(cls), field_types(cls)
    updates: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        where = _source_of(dotted, sources, default_source)
        if key not in fields:
            raise UserError(
                f"unknown config key '{dotted}' (from {where}){_suggest(str(key), fields, prefix)}"
            )
        tp = hints.get(key, Any)
        if is_dataclass_type(tp):
            current = getattr(base, key) if base is not None else _default_of(fields[key])
            if isinstance(value, tp):
                updates[key] = value
                continue
            nested_base = current if isinstance(current, tp) else None
            updates[key] = _build(tp, nested_base, value, sources, raws, default_source, dotted + ".")
            continue
        try:
            updates[key] = coerce_value(value, tp, raws.get(dotted))
            _check_bounds(dotted, updates[key], fields[key].metadata, where)
        except Mismatch:
            if (
                isinstance(value, Mapping)
                and dotted not in raws
                and any(k.startswith(dotted + ".") for k in raws)
            ):
                inner = next(k for k in raws if k.startswith(dotted + "."))
                raise UserError(
                    f"unknown config key '{inner}' (from {sources[inner]}): '{dotted}' is "
                    f"{describe_type(tp)}, not a section"
                ) from None
            shown = raws.get(dotted, value)
            raise UserError(
                f"config key '{dotted}' must be {describe_type(tp)}, got {_short(shown)} (from {where})"
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
        raise UserError(f"config key {keys} has no default: set it in the config file or with key=value")
    return cls(**updates)


def _cut(text: str, limit: int = 100) -> str:
    """``text`` cut to ``limit`` characters, for messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    """``repr(value)``, cut short: a config value can be huge (a YAML alias bomb expands exponentially)."""
    return _cut(_REPR.repr(value), 120)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = (
    3,
    8,
    8,
    80,
    80,
    40,
)


def _check_bounds(dotted: str, value: Any, metadata: Mapping[str, Any], where: str) -> None:
    """The range a field declares (``doc(..., minimum=, above=, maximum=)``), for a number or each number of a
    list; ``None`` (where the field allows it) is always in range."""
    low, above, high = metadata.get("minimum"), metadata.get("above"), metadata.get("maximum")
    if low is None and above is None and high is None:
        return
    for number in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        if (
            (low is not None and number < low)
            or (above is not None and not number > above)
            or (high is not None and number > high)
        ):
            parts = [f">= {low}" if low is not None else "", f"> {above}" if above is not None else ""]
            parts.append(f"<= {high}" if high is not None else "")
            bound = " and ".join(p for p in parts if p)
            raise UserError(f"config key '{dotted}' must be {bound}, got {_short(value)} (from {where})")


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


def doc(
    text: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    **kwargs: Any,
) -> Any:
    """A dataclass field documented where it is declared: ``x: int = doc("what x is", default=3, minimum=1)``.

    The text is what ``--help-config`` prints for the key (:func:`config_help`). ``minimum`` (``>=``),
    ``above`` (``>``) and ``maximum`` (``<=``) bound a number, or every number of a list: checked when a
    config is loaded (the message names the key and where the value came from) and by
    :func:`check_declared_bounds` in the config's ``__post_init__``, so a value that would hang a run or
    exhaust memory fails at once.
    """
    bounds = {"minimum": minimum, "above": above, "maximum": maximum}
    metadata = {"help": text, **{k: v for k, v in bounds.items() if v is not None}}
    return dataclasses.field(metadata=metadata, **kwargs)


#: The fields every run config has, with one meaning (and one name) in meta-RL and few-shot runs alike, and
#: their bounds (generous: they stop values that would overflow, hang or exhaust memory, not unusual runs).
RUN_FIELDS: dict[str, tuple[str, dict[str, float]]] = {
    "seed": (
        "seed of everything random in the run (initial weights, tasks, episodes, action noise)",
        {"minimum": 0, "maximum": 2**63 - 1},
    ),
    "iterations": ("meta-iterations (outer updates) of the whole run", {"minimum": 0, "maximum": 10**9}),
    "meta_batch_size": ("tasks per meta-iteration", {"minimum": 1, "maximum": 100_000}),
    "log_every": (
        "log the training scalars every this many iterations, averaged over them",
        {"minimum": 1, "maximum": 10**9},
    ),
    "checkpoint_every": (
        "write the checkpoint every this many iterations (and when the run stops)",
        {"minimum": 1, "maximum": 10**9},
    ),
    "time_limit_seconds": (
        "stop training (after at least one iteration) once this wall-clock time is used; resume continues "
        "the run; null: no limit",
        {"minimum": 0},
    ),
    "torch_threads": (
        "torch.set_num_threads for the run (null: leave torch's default)",
        {"minimum": 1, "maximum": 1024},
    ),
    "keep_freed_memory": (
        "keep freed heap memory for reuse (glibc's mallopt, process-wide, for the rest of the process): large "
        "tensors then reuse pages instead of faulting new ones in (BENCHMARKS.md: MAML-TRPO iterations "
        "1.3-1.8x faster); the heap stays at its peak size; no effect where the C library is not glibc",
        {},
    ),
}

#: What a resumed run may change: its budget and bookkeeping, never what it learns.
RESUMABLE_KEYS = frozenset(
    {
        "iterations",
        "time_limit_seconds",
        "checkpoint_every",
        "log_every",
        "torch_threads",
        "keep_freed_memory",
    }
)


def run_field(name: str, **kwargs: Any) -> Any:
    """A field of :data:`RUN_FIELDS`, documented and bounded as every config declares it: ``iterations: int =
    run_field("iterations", default=500)``."""
    text, bounds = RUN_FIELDS[name]
    return doc(text, **{**bounds, **kwargs})


def check_declared_bounds(config: Any, prefix: str = "") -> None:
    """Check every field of ``config`` against the bounds it declares (call from the config's ``__post_init__``;
    nested sections check their own).

    Raises:
        UserError: naming the key (``prefix`` + name), its value and the bound.
    """
    for f in dataclasses.fields(config):
        _check_bounds(prefix + f.name, getattr(config, f.name), f.metadata, "the config")


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_drift(config_cls: type, saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The keys (dotted) in which ``current`` differs from ``saved`` (both ``config_to_dict`` forms), other than
    those a resumed run may change (:data:`RESUMABLE_KEYS` and the class's ``RESUMABLE``); keys that only one
    side has (written by another version of metarl) are not compared."""
    extra = tuple(getattr(config_cls, "RESUMABLE", ()))
    allowed = RESUMABLE_KEYS | {k for k in extra if not k.endswith(".")}
    prefixes = tuple(k for k in extra if k.endswith("."))
    old, new = _flat(saved), _flat(current)
    return sorted(
        k
        for k in old.keys() & new.keys()
        if old[k] != new[k] and k not in allowed and not k.startswith(prefixes)
    )


def check_resume_overrides(config_cls: type, overrides: Iterable[str]) -> None:
    """Refuse ``key=value`` overrides of a resumed run other than :data:`RESUMABLE_KEYS` and the config's own
    additions (a class attribute ``RESUMABLE``: more keys, or ``"section."`` prefixes).

    Raises:
        UserError: naming the keys that may change and the ones that were given.
    """
    extra = tuple(getattr(config_cls, "RESUMABLE", ()))
    allowed = RESUMABLE_KEYS | {k for k in extra if not k.endswith(".")}
    prefixes = tuple(k for k in extra if k.endswith("."))
    keys = (str(item).partition("=")[0].strip() for item in overrides)
    changed = sorted(k for k in keys if k not in allowed and not k.startswith(prefixes))
    if changed:
        may = ", ".join([*sorted(allowed), *(f"{p}*" for p in prefixes)])
        raise UserError(f"--resume keeps the run's config; only {may} may change (got {', '.join(changed)})")


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
            raise UserError(
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
                    raise UserError(
                        f"override {item!r} conflicts with an earlier override of '{'.'.join(parts[: i + 1])}'"
                    )
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
        sources[key] = f"override {_cut(str(item))}"
        raws[key] = text
    return nested, sources, raws


def _merge(
    base: dict[str, Any], update: Mapping[str, Any], sources: Mapping[str, str], prefix: str = ""
) -> dict:
    """``base`` (a config file's data) updated with the nested overrides; an override into a key the file
    sets to something other than a section is refused rather than replacing it."""
    merged = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(dict(current), value, sources, f"{prefix}{key}.")
        elif isinstance(value, Mapping) and current is not None:
            inner = next(k for k in sources if k.startswith(f"{prefix}{key}."))
            raise UserError(
                f"config key '{prefix}{key}' is {_short(current)} in the config file, not a section, so "
                f"{sources[inner]} has nowhere to go: fix '{prefix}{key}' in the file"
            )
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping a YAML config file holds (``{}`` for an empty file).

    Raises:
        MissingFileError: no such file.
        UserError: a folder, not valid YAML, or not a mapping.
    """
    target = Path(path)
    if not target.exists():
        raise MissingFileError(f"config file {target} not found")
    if not target.is_file():
        raise UserError(f"config file {target} is a directory: pass a YAML file, e.g. my-experiment.yaml")
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise UserError(f"config file {target} is not valid YAML: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {target} must hold a mapping of key: value, got {type(data).__name__}")
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

    A config class may map old key names to new ones in a class attribute ``RENAMED``; a file that uses an
    old name still loads.

    Returns:
        An instance of ``cls``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: invalid YAML, an unknown key, a value of the wrong type, or a range check in ``__post_init__``.
    """
    if not is_dataclass_type(cls):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    for old_name, new_name in getattr(cls, "RENAMED", {}).items():  # files written before a key was renamed
        if old_name in data and new_name not in data:
            data[new_name] = data.pop(old_name)
    default_source = f"file {path}" if path is not None else "defaults"
    nested, sources, raws = parse_overrides(overrides)
    data = _merge(data, nested, sources)
    return _build(cls, base, data, sources, raws, default_source)


def updated_config(config: T, changes: Mapping[str, Any], source: str) -> T:
    """``config`` with the top-level ``changes`` (values, not text), checked like a config file's.

    Args:
        config: a config instance.
        changes: ``{key: value}`` to set (keys of ``config``'s own fields).
        source: where the values come from, for error messages (e.g. ``"metarl evaluate's options"``).

    Raises:
        UserError: an unknown key, a value of the wrong type or out of its declared bounds.
    """
    return _build(type(config), config, changes, {key: source for key in changes}, {}, source)


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
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy / torch scalars and arrays
        return value.tolist()
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
    hints = field_types(cls)
    for name, f in init_fields(cls).items():
        tp = hints.get(name, Any)
        default = _default_of(f)
        if is_dataclass_type(tp):
            help_text = f.metadata.get("help", "")
            lines.append(f"  {prefix}{name}: section{' - ' + help_text if help_text else ''}")
            lines.append(config_help(tp, f"{prefix}{name}."))
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            shown = "required"
        else:
            shown = f"default {yaml.safe_dump(_plain(default), default_flow_style=True).strip().removesuffix('...').strip()}"
        help_text = f.metadata.get("help", "")
        lines.append(f"  {prefix}{name} ({type_name(tp)}, {shown}){': ' + help_text if help_text else ''}")
    return "\n".join(lines)
