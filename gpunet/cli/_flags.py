"""The CLI's one vocabulary: flags every command spells the same way, and the old spellings.

``--img-size`` (input side in px), ``--batch-size``, ``--gpu`` (the latency device in the
registry), ``--device`` (the torch device), ``--model`` (repeatable or a comma list) and ``--json``
(one JSON document on stdout). An old spelling still works for one release: it is registered as a
hidden alias of the new flag, and ``gpunet`` prints a warning on stderr when it is used. The table
is in docs/cli.md.
"""
from __future__ import annotations

import argparse
from typing import Any, List, Optional, Sequence


class _Renamed(argparse.Action):
    """An old spelling of a flag: stores like the new one (``append`` too) and warns."""

    def __init__(self, option_strings, dest, new: str = "", append: bool = False, **kwargs):
        self.new, self.append = new, append
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        said = getattr(namespace, "deprecated_flags", None) or []
        setattr(namespace, "deprecated_flags", said + [f"{option_string} is deprecated and goes in the next "
                                                       f"release; use {self.new}"])
        if self.append:
            values = (getattr(namespace, self.dest, None) or []) + [values]
        setattr(namespace, self.dest, values)


def renamed(parser: argparse.ArgumentParser, old: Sequence[str], new: argparse.Action, append: bool = False) -> None:
    """Keep the spellings ``old`` working as hidden, warning aliases of the registered action ``new``."""
    for spelling in old:
        parser.add_argument(spelling, dest=new.dest, type=new.type, new=new.option_strings[-1], append=append,
                            action=_Renamed,
                            metavar=new.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_img_size(parser, help: str = "input side in px (default: the model's)", old: Sequence[str] = (),
                 dest: str = "img_size", **kwargs) -> argparse.Action:
    action = parser.add_argument("--img-size", dest=dest, type=int, default=None, metavar="PX", help=help, **kwargs)
    renamed(parser, old, action)
    return action


def add_batch_size(parser, default: Optional[int] = 1, help: str = "batch size (default %(default)s)",
                   old: Sequence[str] = (), dest: str = "batch_size", short: bool = False) -> argparse.Action:
    names = ("-b", "--batch-size") if short else ("--batch-size",)
    action = parser.add_argument(*names, dest=dest, type=int, default=default, metavar="N", help=help)
    renamed(parser, old, action)
    return action


def add_gpu(parser, help: str, default: Any = None, old: Sequence[str] = (), dest: str = "gpu",
            append: bool = False, required: bool = False) -> argparse.Action:
    """``--gpu NAME``: the device whose latency figures are meant (``gpunet list --devices``)."""
    action = parser.add_argument("--gpu", dest=dest, default=default, metavar="NAME", help=help,
                                 required=required and not old, action="append" if append else "store")
    renamed(parser, old, action, append=append)
    if required and old:  # argparse would refuse the old spelling alone: finish() checks instead
        parser.set_defaults(required_flags=((dest, "--gpu"),))
    return action


def add_models(parser, help: str, default: Any = None, old: Sequence[str] = ("--models",),
               dest: str = "models") -> argparse.Action:
    """``--model NAME`` for commands that take several: repeatable, each may be a comma list."""
    action = parser.add_argument("--model", dest=dest, action="append", default=default, metavar="NAME", help=help)
    renamed(parser, old, action, append=True)
    return action


class UsageError(ValueError):
    """A combination of flags the command cannot take (exit 2, like argparse's own errors)."""

    def __init__(self, message: str, argument: str):
        super().__init__(message)
        self.argument = argument


def add_model(parser, help: str, dest: str = "name", optional: bool = False) -> None:
    """The one model a command acts on: ``MODEL`` (positional) or ``--model MODEL``; :func:`finish`
    checks that it was given once."""
    parser.add_argument(dest, nargs="?", default=None, metavar="MODEL", help=f"{help} (or --model)")
    parser.add_argument("--model", dest=f"{dest}_flag", default=None, metavar="MODEL", help="the same, as a flag")
    parser.set_defaults(model_slot=(dest, optional))


def finish(args: argparse.Namespace) -> None:
    """After parsing: required flags that have an old spelling, and the model of an
    :func:`add_model` command, from whichever spelling was used."""
    for dest, flag in getattr(args, "required_flags", ()):
        if getattr(args, dest, None) is None:
            raise UsageError(f"{flag} is required", dest)
    slot = getattr(args, "model_slot", None)
    if slot is None:
        return
    dest, optional = slot
    positional, flag = getattr(args, dest), getattr(args, f"{dest}_flag")
    if positional and flag and positional != flag:
        raise UsageError(f"model given twice: {positional!r} and --model {flag!r}", "model")
    if not (positional or flag) and not optional:
        raise UsageError("model is required: give MODEL or --model MODEL", "model")
    setattr(args, dest, positional or flag)


#: library argument names whose CLI flag has another dest (``device=`` of the registry is ``--gpu``)
LIBRARY_ARGUMENTS = {"device": "gpu", "batch": "batch_size", "resolution": "img_size", "models": "models"}


def record_flags(parser: argparse.ArgumentParser) -> None:
    """Give every leaf command's namespace ``flag_of``: dest -> the flag's current spelling."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in subs:
        for child in sub.choices.values():
            record_flags(child)
    if not subs:
        parser.set_defaults(flag_of={a.dest: next((o for o in a.option_strings if o.startswith("--")), a.dest)
                                     for a in parser._actions if a.help is not argparse.SUPPRESS})


def flag_for(args: argparse.Namespace, argument: str) -> Optional[str]:
    """The flag that sets the library argument ``argument`` in this command, if one does."""
    flags = getattr(args, "flag_of", {})
    flag = flags.get(argument) or flags.get(LIBRARY_ARGUMENTS.get(argument, ""))
    return flag if flag and flag.startswith("--") else None


def model_list(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The names given to a repeatable ``--model`` (each may be a comma list); None when none were."""
    if not values:
        return None
    return [name.strip() for v in values for name in v.split(",") if name.strip()]


def add_json(parser, what: str = "the result") -> argparse.Action:
    return parser.add_argument("--json", action="store_true",
                               help=f"print {what} as one JSON document on stdout (human text goes to stderr)")
