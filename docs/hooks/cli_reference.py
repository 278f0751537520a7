"""MkDocs hook: the CLI reference page, rendered from ``gpunet.cli.build_parser()`` at build time.

A page holding the marker below gets, in its place, a table of every sub-command and then each
command's ``--help`` text (nested commands such as ``gpunet lut build`` included), so the page
always says what the installed parser says; nothing generated is committed.
"""
from __future__ import annotations

import argparse
import os
from typing import Iterator, List, Tuple

MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help text to $COLUMNS - 2


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[Tuple[argparse.ArgumentParser, str]]:
    """(sub-parser, one-line help) for every command under ``parser``, depth first, in registration order."""
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield sub, helps.get(name, "")
                yield from _subcommands(sub)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    """The Markdown that replaces :data:`MARKER`."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from gpunet.cli import build_parser

        parser = build_parser()
        commands = list(_subcommands(parser))
        lines: List[str] = ["| command | what it does |", "|---|---|"]
        lines += [f"| [`{sub.prog}`](#{sub.prog.replace(' ', '-')}) | {_cell(text)} |" for sub, text in commands]
        sections = [("gpunet", parser.format_help())] + [(sub.prog, sub.format_help()) for sub, _ in commands]
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before
    for prog, text in sections:
        level = "#" * min(2 + prog.count(" "), 4) if prog != "gpunet" else "##"
        lines += ["", f'{level} `{prog}` {{ #{prog.replace(" ", "-")} }}', "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
