"""Config loading: defaults < YAML file < key=value overrides, with type checks and clear messages."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Literal

import pytest

from metarl.training.config import (
    config_from_dict,
    config_help,
    config_to_dict,
    load_config,
    parse_overrides,
    save_config,
)


class Schedule(enum.Enum):
    CONSTANT = "constant"
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    hidden_sizes: tuple[int, ...] = field(default=(64, 64), metadata={"help": "widths of the hidden layers"})
    activation: Literal["tanh", "relu"] = "tanh"
    init_std: float = 1.0


@dataclasses.dataclass
class TrainConfig:
    inner_lr: float = field(default=0.1, metadata={"help": "step size of the inner policy-gradient update"})
    meta_batch_size: int = field(default=20, metadata={"help": "tasks per meta-iteration"})
    first_order: bool = False
    env: str = "MetaRL/Navigation2D-v0"
    max_kl: float | None = 0.01
    output: Path = Path("runs")
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Schedule = Schedule.CONSTANT
    tags: list[str] = field(default_factory=list)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        if self.inner_lr <= 0:
            raise ValueError(f"inner_lr must be > 0, got {self.inner_lr}: pass a positive step size")
        if self.meta_batch_size < 1:
            raise ValueError(f"meta_batch_size must be >= 1, got {self.meta_batch_size}")


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_given():
    assert load_config(TrainConfig) == TrainConfig()


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = _write(
        tmp_path, "inner_lr: 0.5\nmeta_batch_size: 40\npolicy:\n  activation: relu\n  init_std: 2\n"
    )
    cfg = load_config(TrainConfig, path, ["inner_lr=0.25", "policy.hidden_sizes=[32, 32]"])
    assert cfg.inner_lr == 0.25  # override beats file
    assert cfg.meta_batch_size == 40  # file beats default
    assert cfg.policy == PolicyConfig(hidden_sizes=(32, 32), activation="relu", init_std=2.0)
    assert isinstance(cfg.policy.init_std, float)
    assert cfg.first_order is False and cfg.env == "MetaRL/Navigation2D-v0"  # untouched defaults


def test_value_conversions():
    cfg = load_config(
        TrainConfig,
        overrides=[
            "inner_lr=1",  # int -> float
            "max_kl=null",
            "output=/tmp/out",
            "betas=[0.5, 0.9]",
            "schedule=linear",
            "tags=[a, b]",
            "env=2024",  # a str field keeps the typed text
            "first_order=true",
        ],
    )
    assert cfg.inner_lr == 1.0 and isinstance(cfg.inner_lr, float)
    assert cfg.max_kl is None
    assert cfg.output == Path("/tmp/out")
    assert cfg.betas == (0.5, 0.9)
    assert cfg.schedule is Schedule.LINEAR
    assert cfg.tags == ["a", "b"]
    assert cfg.env == "2024"
    assert cfg.first_order is True


def test_yaml_scientific_notation_reads_as_float(tmp_path):
    # PyYAML (YAML 1.1) parses 1e-3 as the string "1e-3"; a float field must still accept it.
    cfg = load_config(TrainConfig, _write(tmp_path, "inner_lr: 1e-3\n"))
    assert cfg.inner_lr == pytest.approx(1e-3)


def test_wrong_type_from_override_names_key_and_source():
    with pytest.raises(ValueError) as info:
        load_config(TrainConfig, overrides=["inner_lr=abc"])
    assert (
        str(info.value)
        == "config key 'inner_lr' must be a finite number, got 'abc' (from override inner_lr=abc)"
    )


def test_wrong_type_from_file_names_the_file(tmp_path):
    path = _write(tmp_path, "policy:\n  hidden_sizes: [64, wide]\n")
    with pytest.raises(
        ValueError, match=r"config key 'policy.hidden_sizes' must be a list of integers"
    ) as info:
        load_config(TrainConfig, path)
    assert f"(from file {path})" in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("meta_batch_size=true", "config key 'meta_batch_size' must be an integer, got 'true'"),
        ("meta_batch_size=2.5", "config key 'meta_batch_size' must be an integer"),
        ("first_order=1", "config key 'first_order' must be a boolean"),
        ("inner_lr=true", "config key 'inner_lr' must be a finite number, got 'true'"),
        ("betas=[0.9]", "config key 'betas' must be a list of 2 items"),
        ("max_kl=big", "config key 'max_kl' must be a finite number or null"),
        (
            "policy.activation=rleu",
            "one of 'tanh', 'relu', got 'rleu' (from override policy.activation=rleu); did you mean 'relu'?",
        ),
        ("schedule=cosine", "config key 'schedule' must be one of 'constant', 'linear'"),
        ("policy=3", "config section 'policy' must be a mapping"),
    ],
)
def test_type_errors(override, expected):
    with pytest.raises(ValueError) as info:
        load_config(TrainConfig, overrides=[override])
    assert expected in str(info.value)


def test_unknown_key_suggests_and_lists_valid_keys():
    with pytest.raises(ValueError) as info:
        load_config(TrainConfig, overrides=["iner_lr=0.1"])
    message = str(info.value)
    assert "unknown config key 'iner_lr'" in message
    assert "did you mean 'inner_lr'?" in message
    assert "Valid keys: betas, env, first_order, inner_lr, max_kl, meta_batch_size" in message


def test_unknown_nested_key_from_file(tmp_path):
    path = _write(tmp_path, "policy:\n  hiden_sizes: [8]\n")
    with pytest.raises(
        ValueError,
        match=r"unknown config key 'policy.hiden_sizes' \(from file .*config.yaml\); "
        r"did you mean 'policy.hidden_sizes'\?",
    ):
        load_config(TrainConfig, path)


def test_dotted_override_into_a_scalar_key():
    with pytest.raises(ValueError) as info:
        load_config(TrainConfig, overrides=["inner_lr.value=0.1"])
    assert str(info.value) == (
        "unknown config key 'inner_lr.value' (from override inner_lr.value=0.1): 'inner_lr' is a finite number, not a section"
    )


def test_post_init_range_error_propagates():
    with pytest.raises(ValueError, match=r"inner_lr must be > 0, got -1.0: pass a positive step size"):
        load_config(TrainConfig, overrides=["inner_lr=-1"])


def test_malformed_override_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="must look like key=value"):
        load_config(TrainConfig, overrides=["inner_lr"])
    with pytest.raises(ValueError, match="must look like key=value"):
        load_config(TrainConfig, overrides=["policy..activation=relu"])
    with pytest.raises(FileNotFoundError, match="config file .*nope.yaml not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(TrainConfig, _write(tmp_path, "inner_lr: [1, 2\n"))
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(TrainConfig, _write(tmp_path, "- 1\n- 2\n"))
    assert load_config(TrainConfig, _write(tmp_path, "")) == TrainConfig()
    with pytest.raises(ValueError, match="is a directory: pass a YAML file"):
        load_config(TrainConfig, tmp_path)


def test_required_field_without_default():
    @dataclasses.dataclass
    class Needs:
        data_root: str

    with pytest.raises(ValueError, match="'data_root' has no default"):
        load_config(Needs)
    assert load_config(Needs, overrides=["data_root=/data"]).data_root == "/data"


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(TrainConfig, overrides=["policy.hidden_sizes=[8, 4]", "max_kl=null", "schedule=linear"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(TrainConfig, path) == cfg
    as_dict = config_to_dict(cfg)
    assert as_dict["policy"]["hidden_sizes"] == [8, 4]
    assert as_dict["schedule"] == "linear" and as_dict["output"] == "runs"
    assert config_from_dict(TrainConfig, as_dict) == cfg
    assert list(as_dict) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_base_config_with_overrides_keeps_base_values():
    base = TrainConfig(inner_lr=0.3, policy=PolicyConfig(activation="relu"))
    cfg = load_config(TrainConfig, overrides=["policy.init_std=0.5"], base=base)
    assert cfg.inner_lr == 0.3 and cfg.policy.activation == "relu" and cfg.policy.init_std == 0.5


def test_config_help_lists_fields_defaults_and_help():
    text = config_help(TrainConfig)
    assert (
        "  inner_lr (float, default 0.1): step size of the inner policy-gradient update" in text.splitlines()
    )
    assert "  max_kl (float | None, default 0.01)" in text.splitlines()
    assert (
        "  policy.hidden_sizes (tuple[int, ...], default [64, 64]): widths of the hidden layers"
        in text.splitlines()
    )
    assert "  policy.activation ({tanh,relu}, default tanh)" in text.splitlines()


def test_abstract_sequences_and_numpy_numbers():
    import numpy as np

    @dataclasses.dataclass
    class Widths:
        sizes: Sequence[int] = (1,)
        lr: float = 0.1

    assert load_config(Widths, overrides=["sizes=[3, 4]"]).sizes == [3, 4]
    with pytest.raises(ValueError, match="config key 'sizes' must be a list of integers"):
        load_config(Widths, overrides=["sizes=[3.5]"])
    cfg = config_from_dict(Widths, {"sizes": [np.int64(2)], "lr": np.float32(0.5)})
    assert cfg.sizes == [2] and type(cfg.sizes[0]) is int and cfg.lr == 0.5 and type(cfg.lr) is float


def test_unresolvable_annotation_is_a_clear_type_error():
    class LocalSection:
        pass

    @dataclasses.dataclass
    class Holder:
        section: LocalSection | None = None

    with pytest.raises(
        TypeError, match=r"cannot resolve the annotation 'LocalSection \| None' of config field"
    ):
        load_config(Holder, overrides=["section=null"])


def test_parse_overrides_nests_and_records_sources():
    nested, sources, raws = parse_overrides(["a.b=1", "a.c=[1, 2]", "d=x"])
    assert nested == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert sources["a.b"] == "override a.b=1" and raws["a.c"] == "[1, 2]"
