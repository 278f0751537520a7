"""The library's own error base, so the CLI can tell bad input from bugs.

Every error gpunet raises on purpose (a malformed file, an unknown name, a failed check)
subclasses :class:`GPUNetError` as well as the builtin it always was (``SpecError`` is
still a ``ValueError``), so existing ``except ValueError`` code keeps working. The
``gpunet`` command prints these as one line; anything else is a bug and keeps its
traceback. ``exit_code`` is what the command exits with: 3 for input the user can fix
(a malformed spec / registry / manifest / weights file), 1 for everything else; an error that
names an argument exits 2, as argparse's usage errors (``gpunet.cli.EXIT_CODES``).
"""
from __future__ import annotations

__all__ = ["GPUNetError", "BadInputError"]


class GPUNetError(Exception):
    """Base of every error gpunet raises on purpose (one-line message, no traceback in the CLI)."""

    exit_code = 1


class BadInputError(GPUNetError):
    """A file or object the user gave is malformed; the message names the file and the entry."""

    exit_code = 3
