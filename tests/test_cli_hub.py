"""The `gpunet` command (hub part): list, query, info, cards; run as users run it."""
import json
import os
import subprocess
import sys
from pathlib import Path

from gpunet.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    """Run `python -m gpunet ...` in a fresh process, as a user would."""
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "gpunet", *args], capture_output=True, text=True, env=e,
                          timeout=300)


def test_query_json_from_a_real_process():
    r = run_cli("query", "--max-latency-ms", "1.0", "--gpu", "gv100", "--json")
    assert r.returncode == 0, r.stderr
    cards = json.loads(r.stdout)
    assert [c["name"] for c in cards] == ["gpunet-p1", "gpunet-1", "gpunet-p0", "gpunet-0"]
    assert all(c["latency_ms"] <= 1.0 and c["gpu"] == "gv100" for c in cards)


def test_unknown_device_is_a_clear_error():
    r = run_cli("query", "--gpu", "gv1000")
    assert r.returncode == 1
    assert "unknown device 'gv1000'" in r.stderr and "Did you mean 'gv100'" in r.stderr
    assert r.stdout == ""


def test_list_and_table_output(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["model", "top1"]
    assert [l.split()[0] for l in lines[2:]] == ["gpunet-0", "gpunet-1", "gpunet-2", "gpunet-p0", "gpunet-p1",
                                                  "gpunet-d1", "gpunet-d2"]
    assert main(["list", "--devices", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in devices] == ["a100", "gv100", "v100"]


def test_query_table_and_empty_result(capsys):
    assert main(["query", "--max-latency-ms", "0.7", "--gpu", "a100", "--no-distilled"]) == 0
    out = capsys.readouterr().out
    assert [l.split()[0] for l in out.splitlines()[2:]] == ["gpunet-1", "gpunet-0"]
    assert main(["query", "--max-latency-ms", "0.01"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no model fits" in captured.err


def test_info(capsys):
    assert main(["info", "GPUNet-0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "gpunet-0" and info["params"] == 11885432 and info["flops"] > 3e9
    assert info["latency"]["gv100"][0]["latency_ms"] == 0.62
    stages = info["stages"]
    assert [s["stage"] for s in stages] == [0, 1, 2, 3, 4, 6, "tail"]
    assert stages[2]["type"] == "Fused-IRB" and stages[2]["output"] == "79x79"
    assert main(["info", "gpunet-d1"]) == 0
    text = capsys.readouterr().out
    assert "stage" in text and "IRB" in text and "gv100" in text


def test_committed_model_cards_are_up_to_date(capsys):
    assert main(["cards", "--out", str(REPO / "model_cards"), "--check"]) == 0, capsys.readouterr().err


def test_cards_regenerate_and_detect_staleness(tmp_path, capsys):
    out = tmp_path / "cards"
    assert main(["cards", "--out", str(out), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["cards", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted(f"{n}.md" for n in
                                             ["gpunet-0", "gpunet-1", "gpunet-2", "gpunet-p0", "gpunet-p1",
                                              "gpunet-d1", "gpunet-d2"])
    assert main(["cards", "--out", str(out), "--check"]) == 0
    card = (out / "gpunet-0.md").read_text()
    assert "| gv100 | 0.62 |" in card and "11,885,432" in card


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("list", "query", "info", "cards"):
        assert cmd in r.stdout
