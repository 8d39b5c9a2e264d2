"""What the argparse commands (emdsim-design, -fit, -trial) share: extra Hydra overrides
after the arguments, and one-line errors with exit status 2 for invalid input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from emdsim.config.schema import ConfigError

__all__ = ["parse_with_overrides", "run_command", "command_parser", "version_line"]


def version_line(prog: str = "emdsim") -> str:
    """``emdsim-fit 0.1.0 (git <revision>)``."""
    from emdsim import __version__
    from emdsim.studies.rundir import git_revision

    return f"{prog} {__version__} (git {git_revision() or 'revision unknown'})"


def command_parser(prog: str, summary: str, examples: list[tuple[str, str]], outputs: str) -> argparse.ArgumentParser:
    """An argparse parser whose --help says what the command is for, shows examples and where the
    outputs go, like ``emdsim --help``; every command also answers ``--version``."""
    width = max(len(cmd) for cmd, _ in examples) + 2
    epilog = (
        "examples:\n"
        + "\n".join(f"  {cmd:<{width}}{what}" for cmd, what in examples)
        + f"\n\noutputs: {outputs}\n\ninvalid input: one line naming the field or file, the value and what is"
        " allowed; exit status 2.\nThe model, the other commands and the configuration: emdsim --help."
    )
    parser = argparse.ArgumentParser(
        prog=prog, description=summary, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version, help="print the version and git revision, and exit")
    return parser


class _Version(argparse.Action):
    """``--version``: asks git for the revision only when asked (argparse's own action would ask on
    every start of the command)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line(parser.prog))
        parser.exit()


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: list[str] | None, command: str = "run"
) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv``; words the parser does not know are emdsim overrides, allowed only after
    ``command`` (a stray ``--flag`` is still an error)."""
    args, extra = parser.parse_known_args(argv)
    flags = [a for a in extra if a.startswith("-")]
    if flags or (extra and args.command != command):
        parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
    return args, extra


def run_command(
    prog: str, problem: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> None:
    """Run ``handler(args)`` and exit with its status; invalid input is one line and status 2."""
    try:
        code = handler(args)
    except ConfigError as err:
        print(f"{prog}: {problem}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
