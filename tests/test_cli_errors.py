"""The ``metarl`` command turns user errors, and only those, into one line and exit status 2."""

from __future__ import annotations

import pytest

from metarl import cli
from metarl.errors import MissingFileError, UserError


def _failing_envs(error: Exception):
    def describe_envs() -> str:
        raise error

    return describe_envs


@pytest.mark.parametrize("error", [UserError("bad value: use 3"), MissingFileError("no such file: x.yaml")])
def test_a_user_error_is_one_line_and_exit_status_2(error, monkeypatch, capsys):
    monkeypatch.setattr(cli, "describe_envs", _failing_envs(error))
    assert cli.main(["envs"]) == 2
    assert capsys.readouterr().err == f"metarl envs: error: {error}\n"


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast"), FileNotFoundError("x")])
def test_any_other_error_is_a_bug_and_keeps_its_traceback(error, monkeypatch):
    monkeypatch.setattr(cli, "describe_envs", _failing_envs(error))
    with pytest.raises(type(error)):
        cli.main(["envs"])


def test_user_errors_are_still_the_builtin_errors_library_code_expects():
    assert issubclass(UserError, ValueError)
    assert issubclass(MissingFileError, UserError) and issubclass(MissingFileError, FileNotFoundError)
