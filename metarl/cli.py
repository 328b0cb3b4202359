"""The ``metarl`` command.

Sub-commands live next to what they drive and register themselves here through ``add_commands``:
``metarl envs`` (this file), ``train`` / ``evaluate`` / ``demo`` (metarl.agents.commands),
``fewshot`` (metarl.supervised.commands). The modules of ``--import`` are imported here, before the
sub-command runs; ``metarl.envs`` entry points load when an env id is not registered yet
(:mod:`metarl.envs.plugins`). User errors (:mod:`metarl.errors`) exit with status 2 and a
one-line message; any other exception is a bug and shows its traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from metarl import __version__
from metarl.agents import commands as agent_commands
from metarl.envs.catalog import describe_envs
from metarl.envs.plugins import add_import_option, import_env_modules, load_entry_points
from metarl.errors import UserError
from metarl.supervised import commands as fewshot_commands

MAX_MESSAGE = 2000  # characters of a user error the command prints


def one_line(message: str) -> str:
    """``message`` on one line, cut to :data:`MAX_MESSAGE` characters."""
    flat = " ".join(message.split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 15] + " ... (cut short)"


def _envs(args: argparse.Namespace) -> int:
    load_entry_points()
    print(describe_envs())
    return 0


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    parser = OneLineParser(prog="metarl", description="Meta-learning: meta-RL agents and few-shot learners.")
    parser.add_argument("--version", action="version", version=f"metarl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "envs", help="list the registered task distributions (metarl's and those of entry points / --import)"
    )
    add_import_option(p)
    p.set_defaults(func=_envs)
    agent_commands.add_commands(sub)
    fewshot_commands.add_commands(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; ``key=value`` overrides may come anywhere, also between options.

    (argparse alone stops collecting a positional list at the first option, and ``parse_intermixed_args``
    does not support sub-commands.)
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [token for token in extra if token.startswith("-") or "=" not in token]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra and not hasattr(args, "overrides"):
        parser.error(f"`metarl {args.command}` takes no key=value overrides, got {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metarl`` command."""
    args = parse_args(argv)
    try:
        if getattr(args, "imports", None):
            args.imports = import_env_modules(args.imports)  # before any env id is looked up
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"metarl {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
