"""One CLI vocabulary (docs/cli.md): the same flag names everywhere, old spellings kept for one
release with a warning, help on every flag, and ``--json`` as one document on stdout."""
import argparse
import json

import pytest

from gpunet.cli import build_parser, main


def _leaves(parser=None, prefix=()):
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    return [leaf for name, p in sorted(subs[0].choices.items()) for leaf in _leaves(p, prefix + (name,))]


def _visible(parser):
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def test_every_flag_has_help_and_one_spelling_of_each_shared_idea():
    old = {"--resolution", "--batch", "--device-name", "--models"}  # hidden aliases now
    for cmd, parser in _leaves():
        for a in _visible(parser):
            assert a.help and a.help.strip(), (cmd, a.option_strings or a.dest)
            assert not old & set(a.option_strings), (cmd, a.option_strings)
        flags = {o for a in _visible(parser) for o in a.option_strings}
        if cmd[0] != "eval":  # eval --device is the torch device, as in timm
            assert "--device" not in flags, cmd
        if "--json" in flags:
            assert "one JSON document" in next(a.help for a in parser._actions if "--json" in a.option_strings)
    commands = {c for c, _ in _leaves()}
    assert ("search", "run") in commands and ("weights", "import") in commands


@pytest.mark.parametrize("cmd", [("plot",), ("cards",), ("lut", "export"), ("weights", "convert"),
                                 ("weights", "import"), ("weights", "download"), ("info",), ("query",)])
def test_commands_that_report_something_take_json(cmd):
    leaves = dict(_leaves())
    assert any("--json" in a.option_strings for a in leaves[cmd]._actions), cmd


def test_old_spellings_still_work_and_warn(isolated_home, capsys):
    assert main(["query", "--gpu", "gv100", "--batch-size", "1", "--max-latency-ms", "0.7", "--json"]) == 0
    new = capsys.readouterr()
    assert main(["query", "--device", "gv100", "--batch", "1", "--max-latency-ms", "0.7", "--json"]) == 0
    old = capsys.readouterr()
    assert json.loads(old.out) == json.loads(new.out) and {c["name"] for c in json.loads(new.out)} == {"gpunet-p0",
                                                                                                     "gpunet-0"}
    assert "gpunet query: warning: --device is deprecated and goes in the next release; use --gpu" in old.err
    assert "--batch is deprecated" in old.err and "deprecated" not in new.err


def test_a_required_flag_keeps_its_old_spelling(isolated_home, tmp_path, capsys):
    from gpunet.cli._flags import finish

    ns = build_parser().parse_args(["search", "export", str(tmp_path), "--device", "my-cpu"])
    finish(ns)
    assert ns.gpu == "my-cpu" and ns.deprecated_flags
    assert main(["search", "export", str(tmp_path)]) == 2
    assert "gpunet search: error: --gpu is required" in capsys.readouterr().err


def test_model_is_a_positional_or_model_flag_given_once(isolated_home, capsys):
    assert main(["info", "--model", "gpunet-0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "gpunet-0"
    assert main(["info", "gpunet-0", "--model", "gpunet-1"]) == 2
    assert "model given twice" in capsys.readouterr().err
    assert main(["info"]) == 2
    assert "gpunet info: error: model is required" in capsys.readouterr().err


def test_repeatable_model_takes_comma_lists_and_the_old_plural(isolated_home, tmp_path, capsys):
    from gpunet.cli._flags import model_list

    ns = build_parser().parse_args(["bench", "--model", "gpunet-0,gpunet-1", "--model", "gpunet-p0"])
    assert model_list(ns.models) == ["gpunet-0", "gpunet-1", "gpunet-p0"]
    ns = build_parser().parse_args(["bench", "--models", "gpunet-0", "--model", "gpunet-1"])
    assert model_list(ns.models) == ["gpunet-0", "gpunet-1"] and ns.deprecated_flags


def test_json_is_one_document_on_stdout_and_human_text_goes_to_stderr(isolated_home, tmp_path, capsys):
    out = tmp_path / "cards"
    assert main(["cards", "--out", str(out), "--json"]) == 0
    got = capsys.readouterr()
    doc = json.loads(got.out)  # the whole of stdout parses
    assert sorted(doc) == ["out", "written"] and len(doc["written"]) == 7 and got.err == ""
    assert main(["cards", "--out", str(out), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(out), "stale": []}


def test_a_library_argument_error_names_the_renamed_flag(isolated_home, capsys):
    assert main(["query", "--gpu", "gv100", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpunet query: error: --batch-size"), err


def _documented_commands():
    """Every complete ``gpunet ...`` line in the shell examples of README.md and docs/ (lines with
    placeholders such as ``[--all]``, pipes or continuations are left out)."""
    import shlex
    from pathlib import Path

    from test_docs_snippets import all_snippets

    for s in all_snippets():
        if s.lang != "shell":
            continue
        for n, line in enumerate(s.code.splitlines()):
            line = line.split(" #")[0].strip()
            if line.startswith("gpunet ") and not any(c in line for c in "[]|\\$<>…") and "..." not in line:
                yield f"{s.id}+{n}", shlex.split(line)[1:]


def test_the_documented_commands_parse_and_use_no_old_spelling(capsys):
    seen = 0
    for where, argv in _documented_commands():
        try:
            ns = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `gpunet {' '.join(argv)}` does not parse: {capsys.readouterr().err}")
        assert not getattr(ns, "deprecated_flags", None), (where, ns.deprecated_flags)
        seen += 1
    assert seen >= 20
