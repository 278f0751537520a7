"""The ``gpunet`` command: a thin face over the Python API.

Each module in this package that defines ``register(subparsers)`` adds its sub-commands
(``hub.py``: list / query / info / cards; ``weights.py``; ``deploy.py``; ...). Command
modules import heavy dependencies inside their handlers, so ``gpunet --help`` stays fast.
Handlers return an exit code; only this package prints.

Errors: the library's own (:class:`gpunet.errors.GPUNetError`, exit code from the error:
2 for a malformed input file), OS errors on the user's paths, bad argument values
(``ValueError``) and a missing optional package print one line. Anything else is a bug and
keeps its traceback. ``--debug`` (or ``GPUNET_DEBUG=1``) shows the traceback for all errors.
Library errors name Python arguments (``budget must be ...``); where an error says which
(``argument``) and the command has that option, the message names the flag (``--budget``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import List, Optional

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpunet", description="GPUNet model hub: pick by latency, fetch weights, deploy, search.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors (also GPUNET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
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
    debug = args.debug or os.environ.get("GPUNET_DEBUG", "").strip() not in ("", "0")
    try:
        return int(args.handler(args) or 0)
    except Exception as e:
        code = _user_error_code(e)
        if debug or code is None:
            raise
        print(f"gpunet {args.command}: error: {_with_flags(e, args)}", file=sys.stderr)
        return code


def _with_flags(e: BaseException, args: argparse.Namespace) -> str:
    """The message, with the library argument it names (``e.argument``, see :mod:`gpunet._checks`)
    spelled as this command's flag: ``budget must be ...`` -> ``--budget must be ...``."""
    text, name = str(e), getattr(e, "argument", None)
    if name and hasattr(args, name) and text.startswith(name):
        return "--" + name.replace("_", "-") + text[len(name):]
    return text


def _user_error_code(e: BaseException) -> Optional[int]:
    """The exit code for an error the user can fix, None for a bug (which keeps its traceback)."""
    from gpunet.errors import GPUNetError

    if isinstance(e, GPUNetError):
        return int(getattr(e, "exit_code", 1))
    if isinstance(e, ModuleNotFoundError) and not (e.name or "gpunet").startswith("gpunet"):
        return 1  # an optional package (extra) is not installed; the message names it
    if isinstance(e, (OSError, ValueError)):  # the user's paths, bad argument values
        return 1
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
