"""The ``gpunet`` command: a thin face over the Python API.

Each module in this package that defines ``register(subparsers)`` adds its sub-commands
(``hub.py``: list / query / info / cards; ``weights.py``; ``deploy.py``; ...). Command
modules import heavy dependencies inside their handlers, so ``gpunet --help`` stays fast.
Handlers return an exit code; only this package prints.

Errors (exit codes in :data:`EXIT_CODES`): the library's own (:class:`gpunet.errors.GPUNetError`;
3 for a malformed input file, 2 for an argument value), OS errors on the user's paths, bad argument values
(``ValueError``) and a missing optional package print one line. Anything else is a bug and
keeps its traceback. ``--debug`` (or ``GPUNET_DEBUG=1``) shows the traceback for all errors.
Library errors name Python arguments (``budget must be ...``); where an error says which
(``argument``) and the command has that option, the message names the flag (``--budget``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import List, Optional

from ._flags import finish, flag_for, record_flags
from ._fmt import json_stdout

__all__ = ["main", "build_parser", "EXIT_CODES"]

#: the same for every command (docs/cli.md)
EXIT_CODES = {
    0: "success",
    1: "runtime failure: a check failed, a file or package is missing, an unknown name, a backend error",
    2: "usage: argparse's own errors, and a flag value the command cannot take (the message names the flag); "
       "also `deploy` when nothing fits the budget",
    3: "bad input: a file or data the user gave is malformed (the message names the file and the entry)",
    130: "interrupted (Ctrl-C); a search folder resumes",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpunet", description="GPUNet model hub: pick by latency, fetch weights, deploy, search.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors (also GPUNET_DEBUG=1)")
    parser.add_argument("-v", "--verbose", action="count", default=0, dest="log_verbose",
                        help="more log output on stderr: -v info, -vv debug (before the command)")
    parser.add_argument("-q", "--quiet", action="store_true", dest="log_quiet",
                        help="errors only on stderr, and no progress bars (before the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    record_flags(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from gpunet import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _configure_logging(args)
    for text in getattr(args, "deprecated_flags", None) or []:
        print(f"gpunet {args.command}: warning: {text}", file=sys.stderr)
    debug = args.debug or os.environ.get("GPUNET_DEBUG", "").strip() not in ("", "0")
    try:
        finish(args)
        with json_stdout(getattr(args, "json", False)):
            return int(args.handler(args) or 0)
    except Exception as e:
        code = _user_error_code(e)
        if debug or code is None:
            raise
        print(f"gpunet {args.command}: error: {_with_flags(e, args)}", file=sys.stderr)
        return code


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a handler added by one ``main``
    call must not keep a stream a later caller replaced)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _configure_logging(args: argparse.Namespace) -> None:
    """Root logging on stderr: the command's level (``log_level`` default, warnings elsewhere), one
    step lower per ``-v``, errors only with ``-q`` (which also turns off the command's progress)."""
    level = getattr(args, "log_level", logging.WARNING) - 10 * args.log_verbose
    if args.log_quiet:
        level = logging.ERROR
        if hasattr(args, "quiet"):
            args.quiet = True
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(max(level, logging.DEBUG))


def _with_flags(e: BaseException, args: argparse.Namespace) -> str:
    """The message, with the library argument it names (``e.argument``, see :mod:`gpunet._checks`)
    spelled as this command's flag: ``budget must be ...`` -> ``--budget must be ...``."""
    text, name = str(e), getattr(e, "argument", None)
    flag = flag_for(args, name) if name else None
    if flag and text.startswith(name):
        return flag + text[len(name):]
    return text


def _user_error_code(e: BaseException) -> Optional[int]:
    """The exit code for an error the user can fix (see :data:`EXIT_CODES`), None for a bug (which
    keeps its traceback)."""
    from gpunet.errors import BadInputError, GPUNetError

    if isinstance(e, BadInputError):
        return 3
    if getattr(e, "argument", None):  # a value no flag of this command can take: usage, as argparse
        return 2
    if isinstance(e, GPUNetError):
        return int(getattr(e, "exit_code", 1))
    if isinstance(e, ModuleNotFoundError) and not (e.name or "gpunet").startswith("gpunet"):
        return 1  # an optional package (extra) is not installed; the message names it
    if isinstance(e, (OSError, ValueError)):  # the user's paths, bad argument values
        return 1
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
