"""User task distributions reach metarl through ``--import`` (a module or a .py file) and ``metarl.envs`` entry
points; a run records the module its env needs, and every mistake is a one-line UserError."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest

from metarl.envs import make_batched, plugins
from metarl.envs.catalog import describe_envs
from metarl.envs.registration import check_registered
from metarl.errors import MissingFileError, UserError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "point_mass_ring.py"


def plugin_source(env_id: str, function: bool = False) -> str:
    """A module that registers ``env_id`` on import, or only in ``register()``."""
    return textwrap.dedent(
        f"""
        import gymnasium as gym

        class Dummy(gym.Env):
            pass

        def register():
            gym.register(id={env_id!r}, entry_point=Dummy)

        {"" if function else "register()"}
        """
    )


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch):
    """Every test leaves Gymnasium's registry, the plug-in records and sys.modules as it found them."""
    ids, modules = set(gym.registry), set(sys.modules)
    monkeypatch.setattr(plugins, "_USER_IDS", {})
    monkeypatch.setattr(plugins, "_FILE_MODULES", {})
    plugins.load_entry_points.cache_clear()
    yield
    for env_id in set(gym.registry) - ids:
        del gym.registry[env_id]
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    plugins.load_entry_points.cache_clear()


def test_import_by_file_registers_and_records_the_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "my_counters.py").write_text(plugin_source("MyLab/FileCounter-v0"))
    monkeypatch.chdir(tmp_path)
    assert plugins.import_env_modules(["my_counters.py"]) == [str(tmp_path / "my_counters.py")]
    assert plugins.import_env_modules(["my_counters.py"]) == [str(tmp_path / "my_counters.py")]  # idempotent
    assert plugins.user_env_ids() == {"MyLab/FileCounter-v0": "--import my_counters.py"}
    assert "MyLab/FileCounter-v0" in describe_envs() and "[--import my_counters.py]" in describe_envs()
    assert plugins.env_imports("MyLab/FileCounter-v0") == [str(tmp_path / "my_counters.py")]


def test_the_example_records_its_own_file():
    plugins.import_env_modules([str(EXAMPLE)])
    assert plugins.env_imports("MyLab/PointMassRing-v0") == [str(EXAMPLE)]
    assert plugins.env_imports("MetaRL/Navigation2D-v0") == []  # metarl's own envs need nothing
    make_batched("MyLab/PointMassRing-v0", gym.make("MyLab/PointMassRing-v0").unwrapped.sample_tasks(2), 1)


def test_import_by_module_name_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "envs.py").write_text(plugin_source("MyLab/ModuleCounter-v0"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert plugins.import_env_modules(["mylab.envs"]) == ["mylab.envs"]
    check_registered("MyLab/ModuleCounter-v0")
    assert plugins.env_imports("MyLab/ModuleCounter-v0") == ["mylab.envs"]


def test_import_mistakes_are_one_line_user_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--import mylab.nothing: no module named 'mylab'"):
        plugins.import_env_modules(["mylab.nothing"])
    with pytest.raises(MissingFileError, match="--import missing.py: file .*missing.py not found"):
        plugins.import_env_modules(["missing.py"])
    (tmp_path / "broken.py").write_text("import a_dependency_that_is_not_installed\n")
    with pytest.raises(ModuleNotFoundError):  # a bug inside the user's module keeps its traceback
        plugins.import_env_modules(["broken"])
    (tmp_path / "sys.py").write_text("")
    with pytest.raises(UserError, match="a module named 'sys' is already imported; rename the file"):
        plugins.import_env_modules(["sys.py"])


def test_an_env_defined_in_a_script_warns_that_it_cannot_be_found_again():
    gym.register(id="MyLab/ScriptCounter-v0", entry_point="__main__:ScriptEnv")
    with pytest.warns(UserWarning, match="defined in the script being run"):
        assert plugins.env_imports("MyLab/ScriptCounter-v0") == []


def write_distribution(root: Path, entry_points: str) -> None:
    """An installed distribution (``*.dist-info``) declaring ``metarl.envs`` entry points."""
    info = root / "mylab_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[metarl.envs]\n{entry_points}\n")


@pytest.mark.parametrize(
    ("value", "function"), [("mylab_module_plugin", False), ("mylab_function_plugin:register", True)]
)
def test_entry_points_register_a_module_or_call_a_function(tmp_path, monkeypatch, value, function):
    module = value.split(":")[0]
    (tmp_path / f"{module}.py").write_text(plugin_source("MyLab/EntryCounter-v0", function=function))
    write_distribution(tmp_path, f"mylab = {value}")
    monkeypatch.syspath_prepend(str(tmp_path))
    check_registered("MyLab/EntryCounter-v0")  # an unknown id loads the entry points first
    assert plugins.user_env_ids() == {"MyLab/EntryCounter-v0": f"entry point mylab = {value}"}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("mylab_absent_module", r"entry point mylab = mylab_absent_module .* cannot be imported.*uninstall"),
        ("mylab_constant:VALUE", "must name a module or a function, got int"),
    ],
)
def test_a_broken_entry_point_names_itself(tmp_path, monkeypatch, value, needle):
    (tmp_path / "mylab_constant.py").write_text("VALUE = 3\n")
    write_distribution(tmp_path, f"mylab = {value}")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=needle):
        plugins.load_entry_points()


def test_an_unknown_id_says_how_to_register_a_users_env():
    with pytest.raises(UserError, match=r"pass `--import MODULE`.*declare a `metarl.envs` entry point"):
        check_registered("MyLab/NotRegistered-v0")
