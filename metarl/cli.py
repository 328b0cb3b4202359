"""The ``metarl`` command.

Sub-commands live next to what they drive and register themselves here through ``add_commands``:
``metarl envs`` (this file), ``train`` / ``evaluate`` / ``demo`` (metarl.agents.commands),
``fewshot`` (metarl.supervised.commands). User errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = ("metarl.agents.commands", "metarl.supervised.commands")


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback, exit status 2."""


def _envs(args: argparse.Namespace) -> int:
    from metarl.envs.catalog import describe_envs

    print(describe_envs())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="metarl", description="Meta-learning: meta-RL agents and few-shot learners."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("envs", help="list the registered task distributions")
    p.set_defaults(func=_envs)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_commands(sub)
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
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"metarl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
