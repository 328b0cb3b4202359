"""Docstrings as help text: the reStructuredText markup of module docstrings removed for ``--help``.

Module docstrings double as ``argparse`` descriptions, so a command's help and its API reference say the same
thing; a terminal shows them without the markup (````literal````, ``:func:`name```, a literal block's ``::``).
"""

from __future__ import annotations

import inspect
import re

#: An interpreted-text role such as ``:func:`find_config``` or ``:meth:`~AdaptedPolicy.predict```.
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_LITERAL_BLOCK = re.compile(r"::$", re.MULTILINE)


def _role_target(match: re.Match[str]) -> str:
    shortened, target = match.groups()
    return target.rsplit(".", 1)[-1] if shortened else target


def plain_text(docstring: str) -> str:
    """``docstring`` dedented, with its reST markup removed, for a terminal.

    Roles keep their target (``:class:`TrainConfig``` becomes ``TrainConfig``; a ``~`` keeps the last
    component), inline literals lose their double backquotes, and a paragraph ending in ``::`` (which
    announces a literal block) ends in ``:``.

    Args:
        docstring: a docstring, e.g. a module's ``__doc__``.

    Returns:
        The text as a terminal should show it.
    """
    text = _ROLE.sub(_role_target, inspect.cleandoc(docstring))
    text = _LITERAL.sub(r"\1", text)
    return _LITERAL_BLOCK.sub(":", text)
