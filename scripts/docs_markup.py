"""A build hook of the site (``hooks:`` in ``mkdocs.yml``): the API pages show reST roles as plain code.

metarl's docstrings use reStructuredText roles (``:func:`adapt```, ``:class:`~metarl.envs.TaskEnv```), which
markdown renders as the role's name followed by the code. This hook keeps the code and drops the role, as
``metarl.training.plain_text`` does for ``--help``; a ``~`` keeps the target's last component. A paragraph
ending in ``::`` (reST's announcement of a literal block) ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?[a-z]+:<code>(~?)([^<]+)</code>")
_LITERAL_BLOCK = re.compile(r"::</p>")


def _code(match: re.Match[str]) -> str:
    shortened, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if shortened else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite one page's HTML: roles become code, ``::`` at a paragraph's end becomes ``:``."""
    return _LITERAL_BLOCK.sub(":</p>", _ROLE.sub(_code, html))
