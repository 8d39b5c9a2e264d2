"""What the argparse commands (emdsim-design, -fit, -experiment) share: extra Hydra overrides
after the arguments, and one-line errors with exit status 2 for invalid input."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .config.schema import ConfigError

__all__ = ["parse_with_overrides", "run_command"]


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None,
                         command: str = "run") -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv``; words the parser does not know are emdsim overrides, allowed only after
    ``command`` (a stray ``--flag`` is still an error)."""
    args, extra = parser.parse_known_args(argv)
    flags = [a for a in extra if a.startswith("-")]
    if flags or (extra and args.command != command):
        parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
    return args, extra


def run_command(prog: str, problem: str, handler: Callable[[argparse.Namespace], int],
                args: argparse.Namespace) -> None:
    """Run ``handler(args)`` and exit with its status; invalid input is one line and status 2."""
    try:
        code = handler(args)
    except ConfigError as err:
        print(f"{prog}: {problem}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
