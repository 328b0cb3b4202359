"""Docstrings shown by ``--help`` lose their reST markup, and the commands' help shows none."""

import pytest

from metarl.cli import build_parser
from metarl.training import plain_text


def test_roles_literals_and_literal_blocks():
    doc = """Config of ``metarl train``: see :func:`find_config` and :meth:`~metarl.AdaptedPolicy.predict`.

    Example::

        metarl train ``x``
    """
    assert plain_text(doc) == (
        "Config of metarl train: see find_config and predict.\n\nExample:\n\n    metarl train x"
    )


def test_text_without_markup_is_unchanged():
    assert (
        plain_text("  one line, with `single` backquotes: kept") == "one line, with `single` backquotes: kept"
    )


@pytest.mark.parametrize("command", [["train"], ["fewshot", "train"]])
def test_command_help_shows_no_markup(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    shown = capsys.readouterr().out
    assert "metarl" in shown
    assert "``" not in shown and ":func:" not in shown and ":class:" not in shown and "::" not in shown
