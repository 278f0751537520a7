"""`gpunet lut validate`: build, measure end to end, compare, calibrate, plot (torch backend, tiny space)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gpunet.cli import main as cli_main
from gpunet.search import SearchSpace
from gpunet.search.estimate import LatencyEstimator
from gpunet.search.lut import LatencyTable


def test_validate_cli_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    tiny = SearchSpace.small()
    tiny = SearchSpace(stages=tiny.stages, resolutions=(32,), tail_channels=64, num_classes=10, name="tiny")
    space_file = tmp_path / "tiny.json"
    space_file.write_text(tiny.to_json())
    lut, plot = tmp_path / "torch.db", tmp_path / "scatter.png"
    rc = cli_main(["lut", "validate", "--lut", str(lut), "--backend", "torch", "--space", str(space_file),
                   "--n", "5", "--iters", "5", "--warmup", "1", "--threads", "1", "--plot", str(plot), "--json",
                   "--quiet"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and report["space"] == "tiny" and report["blocks_measured"] > 10
    assert len(report["measured_ms"]) == len(report["table_sum_ms"]) == 5
    assert all(m > 0 for m in report["measured_ms"])
    assert -1 <= report["spearman_table_sum"] <= 1 and 0 <= report["within_10pct_calibrated"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the estimate it compared with is the table's sum; the fitted calibration is kept in the table
    vectors = tiny.sample(5, seed=1)
    est = LatencyEstimator(str(lut), tiny, calibration=False).estimate(vectors)
    np.testing.assert_allclose(est.latency_ms, report["table_sum_ms"])
    with LatencyTable(str(lut)) as t:
        cal = t.get_meta("calibration")
        assert cal["space"] == "tiny" and cal["n"] == 5
    assert LatencyEstimator(str(lut), tiny).estimate(vectors).calibrated
    # a second run finds every block already there
    rc = cli_main(["lut", "validate", "--lut", str(lut), "--backend", "torch", "--space", str(space_file),
                   "--n", "5", "--iters", "3", "--warmup", "1", "--threads", "1", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Spearman (table sum)" in out
    assert re.search(r"blocks measured now\s+0\n", out)
    with pytest.raises(ValueError, match="n >= 4"):
        from gpunet.search.validate import validate_lut

        validate_lut(str(lut), "torch", n=2, space=tiny)
