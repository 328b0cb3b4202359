"""Every config key of both halves, fed bad values (generated from the dataclasses themselves: wrong types,
non-finite and overflowing numbers, values just outside each declared bound, sections given as scalars),
from the command line and from a YAML file: each is refused with a one-line ``UserError`` naming the key,
never accepted, never another exception."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import pytest

from metarl.agents.config import TrainConfig
from metarl.errors import UserError
from metarl.supervised.config import FewShotConfig
from metarl.training import load_config
from metarl.training.config_types import field_types, is_dataclass_type

CONFIGS = {"meta-rl": TrainConfig, "few-shot": FewShotConfig}
# Bad values by field type; values just outside declared bounds are added per field.
BAD_INT = ["abc", "1.5", "true", "[1]", "{a: 1}", "1e30", "null"]
BAD_FLOAT = ["abc", "inf", "-inf", "nan", "1e400", "true", "[1]", "{a: 1}", str(10**400)]
BAD_BOOL = ["2", "abc", "[true]", "null"]
BAD_LITERAL = ["nope", "1", "[a]"]
BAD_INT_LIST = ["5", "[a]", "[1.5]", "{a: 1}"]
BAD_SECTION = ["5", "[1, 2]", "abc"]


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, object, dict]]:
    """``(dotted key, annotation, metadata)`` of every field, sections included as their own entries."""
    found = []
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        found.append((prefix + f.name, tp, dict(f.metadata)))
        if is_dataclass_type(tp):
            found.extend(_leaves(tp, f"{prefix}{f.name}."))
    return found


def _strip_none(tp: object) -> tuple[object, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


def _out_of_bounds(metadata: dict, integer: bool) -> list[str]:
    values = []
    if "minimum" in metadata:
        values.append(str(metadata["minimum"] - 1))
    if "above" in metadata:
        values.append(str(metadata["above"]))
    if "maximum" in metadata:
        values.append(str(metadata["maximum"] + 1))
    if integer:
        values = [str(int(float(v))) if float(v) == int(float(v)) else v for v in values]
    return values


def _bad_values(tp: object, metadata: dict) -> list[str]:
    tp, optional = _strip_none(tp)
    origin = typing.get_origin(tp)
    if is_dataclass_type(tp):
        return BAD_SECTION
    if tp is bool:
        return BAD_BOOL if not optional else BAD_BOOL[:-1]
    if tp is int:
        values = [v for v in BAD_INT if not (optional and v == "null")]
        return values + _out_of_bounds(metadata, integer=True)
    if tp is float:
        return BAD_FLOAT + _out_of_bounds(metadata, integer=False)
    if origin is typing.Literal:
        return BAD_LITERAL
    if origin is list and typing.get_args(tp) == (int,):
        bound = metadata.get("minimum")
        return (
            BAD_INT_LIST
            + ([f"[{bound - 1}]"] if bound is not None else [])
            + ([f"[{metadata['maximum'] + 1}]"] if "maximum" in metadata else [])
        )
    if origin is list:
        return ["5", "{a: 1}"]
    if origin is dict:
        return ["5", "[1, 2]"]
    return []  # free text (names, paths): any string is a value


CASES = [
    pytest.param(name, key, value, id=f"{name}:{key}={value}")
    for name, cls in CONFIGS.items()
    for key, tp, metadata in _leaves(cls)
    for value in _bad_values(tp, metadata)
]


def _assert_refused(load, key: str) -> None:
    with pytest.raises(UserError) as info:
        load()
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert key in message or key.rpartition(".")[2] in message, message


@pytest.mark.parametrize(("name", "key", "value"), CASES)
def test_a_bad_override_is_refused_naming_the_key(name, key, value):
    _assert_refused(lambda: load_config(CONFIGS[name], None, [f"{key}={value}"]), key)


@pytest.mark.parametrize(("name", "key", "value"), CASES[::3])
def test_a_bad_value_in_a_config_file_is_refused_naming_the_key(name, key, value, tmp_path: Path):
    *sections, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{section}:\n" for i, section in enumerate(sections))
    path = tmp_path / "config.yaml"
    path.write_text(text + f"{'  ' * len(sections)}{leaf}: {value}\n")
    _assert_refused(lambda: load_config(CONFIGS[name], path), key)


def test_the_suite_is_large_and_covers_every_section():
    assert len(CASES) >= 300
    keys = {key for _, key, _ in (p.values for p in CASES)}
    for section in ("policy.", "inner.", "trpo.", "reptile.", "evaluation.", "data.", "model."):
        assert any(k.startswith(section) for k in keys), section


@pytest.mark.parametrize(
    ("name", "file_text", "override", "key"),
    [
        ("meta-rl", "inner: 0.1\n", "inner.lr=0.2", "inner"),
        ("meta-rl", "policy: [64, 64]\n", "policy.activation=relu", "policy"),
        ("few-shot", "data: sinusoid\n", "data.root=/tmp", "data"),
        ("meta-rl", "evaluation: 3\n", "evaluation.tasks=5", "evaluation"),
    ],
)
def test_an_override_into_a_section_the_file_sets_to_a_scalar_is_refused(
    name, file_text, override, key, tmp_path
):
    path = tmp_path / "config.yaml"
    path.write_text(file_text)
    _assert_refused(lambda: load_config(CONFIGS[name], path, [override]), key)


def test_a_yaml_alias_bomb_gives_a_short_message(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
        for i in range(8)
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("env_kwargs:\n" + "".join(f"  {line}\n" for line in lines) + "iterations: *i\n")
    with pytest.raises(UserError) as info:
        load_config(TrainConfig, path)
    assert len(str(info.value)) < 600


def test_sizes_that_would_exhaust_memory_are_refused_before_anything_is_built():
    with pytest.raises(UserError, match="env copies"):
        load_config(TrainConfig, None, ["meta_batch_size=100000", "episodes_per_task=100000"])
