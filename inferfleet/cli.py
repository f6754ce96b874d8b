"""The `inferfleet` command line: one sub-command per module in `inferfleet.commands`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`,
so adding a command never edits this file. Bad input is reported as one line on stderr with
exit code 2 (`UsageError`); nothing else is caught, so real bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from inferfleet import __version__, commands
from inferfleet.errors import UsageError
from sizing.errors import SizingError


def _command_modules(wanted: str | None = None) -> list[ModuleType]:
    """Every command module, or only the one for `wanted` when its module is named after it
    (`policy-replay` in policy_replay.py): importing them all (pydantic models, the scaling
    controllers) takes about as long as a cold `plan` itself."""
    names = [
        info.name
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")
    ]
    guess = (wanted or "").replace("-", "_")
    if guess in names:
        module = importlib.import_module(f"{commands.__name__}.{guess}")
        if getattr(module, "NAME", None) == wanted and hasattr(module, "run"):
            return [module]
    found = []
    for name in names:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found.append(module)
    return sorted(found, key=lambda m: m.NAME)


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line: the top level takes no option values, so it
    is the first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or one that knows only `command` (the others are not imported)."""
    parser = argparse.ArgumentParser(
        prog="inferfleet",
        description="Size, run and scale vLLM inference fleets on Kubernetes GPU node pools.",
    )
    parser.add_argument("--version", action="version", version=f"inferfleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules(command):
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (UsageError, SizingError) as err:
        print(f"inferfleet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
