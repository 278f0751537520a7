"""`gpunet lut validate`: the report's numbers checked against a ground truth we choose, plus a
real end-to-end run (torch backend, tiny space) checked against the table by hand."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gpunet.cli import main as cli_main
from gpunet.latency import device_fingerprint
from gpunet.search import SearchSpace
from gpunet.search.lut.calibration import Calibration
from gpunet.search.lut import LatencyTable, network_blocks, spec_blocks
from gpunet.search.lut.validate import plot_validation, validate_lut


def _tiny():
    small = SearchSpace.small()
    return SearchSpace(stages=small.stages, resolutions=(32,), tail_channels=64, num_classes=10, name="tiny")


def _block_ms(key) -> float:
    return 0.01 * key.in_channels + 0.02 * key.out_channels + 0.05 * key.kernel_size + 0.3 * key.se


def _synthetic_lut(path, space, vectors, precision="fp32", backend="torch"):
    """A table of this device whose block latencies are a formula we know."""
    keys = network_blocks(space, vectors, precision=precision)
    with LatencyTable(str(path), backend=backend, fingerprint=device_fingerprint(backend), create=True) as t:
        t.put_many((k, {"median_ms": _block_ms(k)}) for k in keys)


def _hand_sum(spec):
    keys = spec_blocks(spec)
    return sum(_block_ms(k) for k in keys), len(keys)


def test_report_recovers_a_known_calibration(tmp_path):
    """Networks whose 'measured' latency is exactly 1.5 x table sum + 0.2 ms: the report must find
    Spearman 1, the known table error, every calibrated estimate within 10 %; the older three-term
    form finds a known per-block cost."""
    space = _tiny()
    n = 8
    _synthetic_lut(tmp_path / "t.db", space, space.sample(n, seed=3))
    truth = lambda spec: 1.5 * _hand_sum(spec)[0] + 0.2  # noqa: E731
    report = validate_lut(str(tmp_path / "t.db"), "torch", n=n, space=space, seed=3, build_missing=False,
                          measure_network=truth, progress=False)
    specs = [space.decode(v) for v in space.sample(n, seed=3)]
    np.testing.assert_allclose(report.table_sum_ms, [_hand_sum(s)[0] for s in specs], rtol=1e-9)
    np.testing.assert_allclose(report.measured_ms, [truth(s) for s in specs], rtol=1e-12)
    assert report.noise == {}  # the caller timed the networks: their noise is not this machine's
    assert report.n_blocks == [_hand_sum(s)[1] for s in specs]
    expected_err = np.mean([(_hand_sum(s)[0] - truth(s)) / truth(s) for s in specs])
    assert report.mean_error_table_sum == pytest.approx(expected_err) and report.mean_error_table_sum < -0.3
    assert report.calibration["scale"] == pytest.approx(1.5, rel=1e-6)
    assert report.calibration["offset_ms"] == pytest.approx(0.2, rel=1e-5)
    assert abs(report.calibration["per_weight_mb"]) < 1e-9
    sums, nb = np.array(report.table_sum_ms), np.array(report.n_blocks)
    three = Calibration.fit(sums, nb, 1.5 * sums + 0.2 * nb)
    assert (three.scale, three.per_block_ms) == (pytest.approx(1.5, rel=1e-6), pytest.approx(0.2, rel=1e-5))
    assert report.within_10pct_calibrated == 1.0 and report.mean_abs_error_calibrated < 1e-6
    assert report.spearman_table_sum == pytest.approx(1.0)
    with LatencyTable(str(tmp_path / "t.db")) as t:
        assert t.get_meta("calibration")["scale"] == pytest.approx(1.5, rel=1e-6)


def test_calibration_belongs_to_its_precision(tmp_path):
    """A bf16 validation keys blocks, kept networks and the calibration by precision: an fp32
    estimate of the same table ignores that calibration, and an fp32 validation fits without
    the bf16 networks."""
    from gpunet.search.lut.estimate import LatencyEstimator

    space, path = _tiny(), str(tmp_path / "t.db")
    vectors = space.sample(8, seed=3)
    _synthetic_lut(path, space, vectors, precision="bf16")
    truth = lambda spec: 1.5 * _hand_sum(spec)[0] + 0.2  # noqa: E731
    report = validate_lut(path, "torch", n=8, space=space, seed=3, build_missing=False, measure_network=truth,
                          progress=False, precision="bf16")
    assert report.precision == "bf16" and report.calibration["scale"] == pytest.approx(1.5, rel=1e-6)
    with LatencyTable(path) as t:
        assert t.get_meta("calibration")["precision"] == "bf16"
        assert {e["precision"] for e in t.get_meta("validation_networks")} == {"bf16"}
    bf16 = LatencyEstimator(path, space, precision="bf16").estimate(vectors)
    assert bf16.calibrated and np.allclose(bf16.latency_ms, 1.5 * bf16.table_sum_ms + 0.2)
    with pytest.raises(Exception, match="lacks"):  # no fp32 blocks: the bf16 rows are not fp32 latencies
        LatencyEstimator(path, space, precision="fp32", fill="error").estimate(vectors)
    _synthetic_lut(path, space, space.sample(8, seed=4), precision="fp32")
    assert not LatencyEstimator(path, space, precision="fp32").estimate(space.sample(8, seed=4)).calibrated
    fp32 = validate_lut(path, "torch", n=8, space=space, seed=4, build_missing=False, progress=False,
                        measure_network=lambda spec: 2.0 * _hand_sum(spec)[0])
    assert fp32.within_10pct_stored is None  # the stored calibration is bf16's, not scored on fp32
    assert fp32.calibration["n"] == 8 and fp32.calibration["scale"] == pytest.approx(2.0, rel=1e-6)


def test_report_sees_a_table_that_ranks_backwards(tmp_path):
    space = _tiny()
    n = 8
    _synthetic_lut(tmp_path / "t.db", space, space.sample(n, seed=3))
    backwards = lambda spec: 100.0 - _hand_sum(spec)[0]  # noqa: E731
    report = validate_lut(str(tmp_path / "t.db"), "torch", n=n, space=space, seed=3, build_missing=False,
                          measure_network=backwards, save_calibration=False, progress=False)
    assert report.spearman_table_sum == pytest.approx(-1.0)
    with LatencyTable(str(tmp_path / "t.db")) as t:
        assert t.get_meta("calibration") is None
    with pytest.raises(ValueError, match="n >= 4"):
        validate_lut(str(tmp_path / "t.db"), "torch", n=2, space=space)


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    space = _tiny()
    _synthetic_lut(tmp_path / "t.db", space, space.sample(5, seed=1))
    report = validate_lut(str(tmp_path / "t.db"), "torch", n=5, space=space, seed=1, build_missing=False,
                          measure_network=lambda s: 2 * _hand_sum(s)[0], progress=False)
    out = plot_validation(report, str(tmp_path / "p.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_validate_cli_end_to_end(tmp_path, capsys):
    """Real blocks and networks measured with torch: the reported table sums are the table's rows
    added up by hand, and a second run measures no block again."""
    tiny = _tiny()
    space_file = tmp_path / "tiny.json"
    space_file.write_text(tiny.to_json())
    lut = tmp_path / "torch.db"
    args = ["lut", "validate", "--lut", str(lut), "--backend", "torch", "--space", str(space_file), "--n", "5",
            "--iters", "3", "--warmup", "1", "--threads", "1", "--quiet", "--recheck-blocks", "3"]
    assert cli_main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and report["space"] == "tiny" and report["blocks_measured"] > 10
    assert report["noise"]["blocks_rechecked"] == 3 and 0 < report["noise"]["within_10pct"] <= 1
    specs = [tiny.decode(v) for v in tiny.sample(5, seed=1)]  # the CLI's default seed
    with LatencyTable(str(lut)) as t:
        by_hand = [sum(t.get(k) for k in spec_blocks(s)) for s in specs]
        assert t.get_meta("calibration")["n"] == 5 and t.get_meta("threads") == 1
    np.testing.assert_allclose(report["table_sum_ms"], by_hand, rtol=1e-9)
    assert all(m > 0 for m in report["measured_ms"])
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "Spearman (table sum)" in out and re.search(r"blocks measured now\s+0\n", out)
    assert re.search(r"moved since last measured \(5 networks\), median / max\s+\d+\.\d% / \d+\.\d%", out)
    assert re.search(r"noise: one block timing repeats to \(sd, 3 timed again\)\s+\d+\.\d%", out)
    assert re.search(r"within ±10%, a table without error at this noise\s+\d+\.\d%", out)


def test_weight_term_is_recovered_and_held_out_calibration_scored(tmp_path):
    """'Measured' = 1.2 x sum + 0.5 ms per weight MB + 0.3 ms, the weight MB computed by hand from
    each network's keys: the vectorised estimator must report the same weight MB, the fit must
    find the terms, and a second seed scores the stored calibration (held out) as exact."""
    from gpunet.search.lut.estimate import spec_weight_mb

    space = _tiny()
    vectors = np.concatenate([space.sample(10, seed=s) for s in (3, 4)])
    _synthetic_lut(tmp_path / "t.db", space, vectors)
    wmb = lambda spec: spec_weight_mb(spec_blocks(spec))  # noqa: E731
    truth = lambda spec: 1.2 * _hand_sum(spec)[0] + 0.5 * wmb(spec) + 0.3  # noqa: E731
    first = validate_lut(str(tmp_path / "t.db"), "torch", n=10, space=space, seed=3, build_missing=False,
                         measure_network=truth, progress=False)
    specs = [space.decode(v) for v in space.sample(10, seed=3)]
    np.testing.assert_allclose(first.weight_mb, [wmb(s) for s in specs], rtol=1e-9)
    assert len(set(np.round(first.weight_mb, 6))) > 3  # the networks differ in weight bytes
    assert first.calibration["per_weight_mb"] == pytest.approx(0.5, rel=1e-6)
    assert first.calibration["scale"] == pytest.approx(1.2, rel=1e-6)
    assert first.calibration["offset_ms"] == pytest.approx(0.3, rel=1e-5) and first.calibration["per_block_ms"] == 0
    assert first.within_10pct_calibrated == 1.0 and first.within_10pct_stored is None
    second = validate_lut(str(tmp_path / "t.db"), "torch", n=10, space=space, seed=4, build_missing=False,
                          measure_network=truth, progress=False)
    assert second.within_10pct_stored == 1.0 and second.mean_abs_error_stored < 1e-9
    with LatencyTable(str(tmp_path / "t.db")) as t:
        cal = t.get_meta("calibration")
        assert cal["seed"] == 4 and cal["per_weight_mb"] == pytest.approx(0.5, rel=1e-6)
        assert cal["n"] == 20  # fitted on both seeds' networks, kept in the table
        kept = t.get_meta("validation_networks")
        assert len(kept) == 20 and {e["seed"] for e in kept} == {3, 4}
        assert kept[0]["measured_ms"] == pytest.approx(truth(space.decode(np.array(kept[0]["vector"]))))
        assert cal["busy"] is False and cal["warnings"] == [] and len(cal["load_avg"]) == 3


def test_a_callers_measurer_is_judged_by_the_local_load_only_when_it_times_here(tmp_path, monkeypatch):
    """A busy local load (pinned) is recorded for every run, but marks it busy (its networks left
    out of later fits) only when its timings were taken on this machine: by default a caller's
    ``measure_network`` (a remote device, a model) is not; ``measured_here=True`` says it is."""
    import gpunet.search.lut.validate as validate

    monkeypatch.setattr(validate, "load_average", lambda: 5.0)
    space = _tiny()
    _synthetic_lut(tmp_path / "t.db", space, np.concatenate([space.sample(8, seed=s) for s in (3, 4, 5)]))
    truth = lambda spec: 1.5 * _hand_sum(spec)[0] + 0.2  # noqa: E731
    run = dict(n=8, space=space, build_missing=False, measure_network=truth, progress=False)
    remote = validate_lut(str(tmp_path / "t.db"), "torch", seed=3, **run)
    assert not remote.busy and not remote.measured_here and remote.load_avg == [5.0, 5.0, 5.0]
    local = validate_lut(str(tmp_path / "t.db"), "torch", seed=4, measured_here=True, **run)
    assert local.busy and local.measured_here and "load average reached 5.00" in local.warnings[0]
    again = validate_lut(str(tmp_path / "t.db"), "torch", seed=5, **run)
    with LatencyTable(str(tmp_path / "t.db")) as t:
        kept = t.get_meta("validation_networks")
        cal = t.get_meta("calibration")
    assert sorted({(e["seed"], e["busy"]) for e in kept}) == [(3, False), (4, True), (5, False)]
    assert cal["n"] == 16 and cal["measured_here"] is False and not again.busy  # seed 4's busy run left out


def test_the_load_probe_reads_the_os_unless_pinned(monkeypatch):
    """$GPUNET_LOAD_AVERAGE replaces the OS's figure (a container sees its host's; the suite pins 0)."""
    from gpunet.latency.machine import load_average

    monkeypatch.setenv("GPUNET_LOAD_AVERAGE", "3.5")
    assert load_average() == 3.5
    monkeypatch.setenv("GPUNET_LOAD_AVERAGE", "high")
    with pytest.raises(ValueError, match="GPUNET_LOAD_AVERAGE='high': expected a number"):
        load_average()
    monkeypatch.delenv("GPUNET_LOAD_AVERAGE")
    assert load_average() >= 0.0  # the OS's figure


def test_busy_machine_is_named_not_mixed_in():
    from gpunet.latency.machine import busy_reasons

    assert busy_reasons([0.9, 1.1, 1.0], 0.03, threads=1) == []
    loaded = busy_reasons([0.9, 3.2, 2.0], 0.03, threads=1)
    assert len(loaded) == 1 and "load average reached 3.20" in loaded[0]
    noisy = busy_reasons([1.0, 1.0, 1.0], 0.4, threads=1)
    assert len(noisy) == 1 and "spread 40%" in noisy[0]
    assert busy_reasons([float("nan")], float("nan"), threads=2) == []


def test_cache_term_finds_where_weights_outgrow_the_cache():
    """'Measured' = 1.1 x sum + 0.01 ms/MB + 0.08 ms per DRAM MB (the smooth form past 40 MB)
    - 0.3 ms: with enough networks the fit finds the 40 MB threshold and the terms; with fewer it
    keeps the linear form; a calibration round-trips through the table's JSON."""
    from gpunet.search.lut.calibration import missed_mb

    rng = np.random.default_rng(0)
    sums, w = rng.uniform(1.5, 12.0, 60), rng.uniform(10.0, 70.0, 60)
    dram = np.maximum(w - 40.0, 0) ** 2 / w
    np.testing.assert_allclose(missed_mb(w, 40.0), dram)
    assert missed_mb(400.0, 40.0) == pytest.approx(324.0) and missed_mb(39.0, 40.0) == 0.0
    measured = 1.1 * sums + 0.01 * w + 0.08 * dram - 0.3
    cal = Calibration.fit(sums, np.full(60, 12.0), measured, w)
    assert cal.cache_form == "smooth" and cal.cache_mb == pytest.approx(40.0, abs=1.0)
    assert (cal.scale, cal.per_weight_mb_over_cache) == (pytest.approx(1.1, rel=0.02), pytest.approx(0.08, rel=0.1))
    np.testing.assert_allclose(cal.apply(sums, 12.0, w), measured, rtol=0.01)
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    few = Calibration.fit(sums[:20], np.full(20, 12.0), measured[:20], w[:20])
    assert few.cache_mb == float("inf") and few.per_weight_mb_over_cache == 0.0
    linear = 1.1 * sums + 0.01 * w - 0.3  # no knee in the data: no cache term is kept
    flat = Calibration.fit(sums, np.full(60, 12.0), linear, w)
    np.testing.assert_allclose(flat.apply(sums, 12.0, w), linear, rtol=1e-6)
    assert abs(flat.per_weight_mb_over_cache) < 1e-6 or flat.cache_mb == float("inf")
    assert Calibration.from_dict(json.loads(json.dumps(flat.to_dict()))).apply(5.0, 12, 50.0) == \
        pytest.approx(float(flat.apply(5.0, 12, 50.0)))


def test_calibrations_saved_before_the_smooth_form_keep_their_hard_knee():
    """A table calibrated with the hard knee (no cache_form stored) estimates as it did."""
    old = {"scale": 1.1, "per_block_ms": 0.0, "per_weight_mb": 0.01, "per_weight_mb_over_cache": 0.08,
           "cache_mb": 40.0, "offset_ms": -0.3, "n": 80}
    cal = Calibration.from_dict(old)
    assert cal.cache_form == "hard"
    assert cal.apply(5.0, 12, 50.0) == pytest.approx(1.1 * 5.0 + 0.01 * 50.0 + 0.08 * 10.0 - 0.3)
    with pytest.raises(ValueError, match="cache_form must be one of"):
        Calibration.from_dict({**old, "cache_form": "lru"})


def test_onnxruntime_validation_exports_each_network_once(tmp_path, monkeypatch):
    """Real ONNX Runtime passes: each network is exported once and timed in a fresh session every
    pass (the export costs seconds, the timing milliseconds)."""
    import tempfile

    import gpunet.export.onnx as onnx_export

    pytest.importorskip("onnxruntime")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the exported graphs go meanwhile
    space = _tiny()
    vectors = space.sample(4, seed=3)
    _synthetic_lut(tmp_path / "ort.db", space, vectors, backend="onnxruntime")
    exports, real = [], onnx_export.export_onnx_proto
    monkeypatch.setattr(onnx_export, "export_onnx_proto", lambda *a, **k: exports.append(a[1]) or real(*a, **k))
    report = validate_lut(str(tmp_path / "ort.db"), "onnxruntime", n=4, space=space, seed=3, build_missing=False,
                          iters=3, warmup=1, threads=1, progress=False, passes=3, recheck_blocks=2)
    assert exports == [(1, 3, 32, 32)] * 4  # the networks (the blocks timed again export on their own)
    assert report.passes == 3 and len(report.measured_median_ms) == 4 and all(m > 0 for m in report.measured_ms)
    assert list(scratch.iterdir()) == []  # the exported graphs are gone
    # the cache share was probed before each pass and after the last, and kept with networks and calibration
    assert len(report.cache_share_mb) == 4 and all(x >= 4 for x in report.cache_share_mb)
    with LatencyTable(str(tmp_path / "ort.db")) as t:
        share = float(np.median(report.cache_share_mb))
        assert [e["cache_share_mb"] for e in t.get_meta("validation_networks")] == [share] * 4
        # the calibration's share is over the networks it was fitted on (a busy run's are left out)
        assert t.get_meta("calibration")["cache_share_mb"] == (None if report.busy else share)
        # two blocks were timed again for the noise floor, and the table kept its own timings
        stored = {k.key: _block_ms(k) for k in network_blocks(space, vectors)}
        assert t.medians() == pytest.approx(stored)
    noise = report.noise
    assert noise["blocks_rechecked"] == 2 and len(noise["block_pairs_ms"]) == 2
    assert all(first in stored.values() and again > 0 for first, again in noise["block_pairs_ms"])
    assert noise["network_median_se"] >= 0 and 0 < noise["within_10pct"] <= 1


def test_an_int8_validation_quantizes_each_network_once(tmp_path, monkeypatch):
    """At int8 each network's QDQ graph (NNCF, seconds) is made once and timed in a fresh ONNX
    Runtime session every pass, as at fp32; the timings are of that graph, not a re-export."""
    import gpunet.export.onnx as onnx_export
    import gpunet.export.quantize as quantize
    import gpunet.latency.bench as bench

    pytest.importorskip("onnxruntime")
    pytest.importorskip("nncf")
    space = _tiny()
    vectors = space.sample(4, seed=5)
    _synthetic_lut(tmp_path / "q.db", space, vectors, precision="int8", backend="onnxruntime")
    made, real = [], quantize.int8_graph
    monkeypatch.setattr(quantize, "int8_graph", lambda *a, **k: made.append(a[1]) or real(*a, **k))
    timed, real_runner = [], bench.make_runner
    monkeypatch.setattr(bench, "make_runner", lambda *a, **k: timed.append(sum(
        n.op_type == "QuantizeLinear" for n in k["proto"].graph.node)) or real_runner(*a, **k))
    report = validate_lut(str(tmp_path / "q.db"), "onnxruntime", n=4, space=space, seed=5, build_missing=False,
                          iters=2, warmup=1, threads=1, progress=False, passes=2, precision="int8",
                          recheck_blocks=0)
    assert made == [(1, 3, 32, 32)] * 4 and len(timed) == 8 and min(timed) > 0  # quantized graphs, 2 passes
    assert report.precision == "int8" and all(m > 0 for m in report.measured_ms)


def test_a_moved_cache_share_is_reported():
    from gpunet.latency.machine import cache_notes

    assert cache_notes([64.0, 64.0, 96.0], 48.0, 34.0) == []  # within 1.5x
    note = cache_notes([96.0, 96.0], 48.0, 34.0)
    assert len(note) == 1 and "96 MB now and 48 MB when" in note[0] and "more than 34 MB of weights" in note[0]
    assert len(cache_notes([24.0], 48.0, float("inf"))) == 1
    assert cache_notes([], 48.0, 34.0) == [] and cache_notes([96.0], None, 34.0) == []


def test_networks_are_measured_in_passes_and_keep_their_median(tmp_path):
    """Three passes over the networks; one slow and one fast pass leave each network's median,
    the pass spread is reported, and passes must be a positive integer."""
    space = _tiny()
    _synthetic_lut(tmp_path / "t.db", space, space.sample(6, seed=3))
    calls = []

    def jittery(spec):  # pass 1 exact, pass 2 30 % slow, pass 3 10 % fast
        calls.append(spec)
        factor = (1.0, 1.3, 0.9)[(len(calls) - 1) // 6]
        return factor * 2.0 * _hand_sum(spec)[0]

    report = validate_lut(str(tmp_path / "t.db"), "torch", n=6, space=space, seed=3, build_missing=False,
                          measure_network=jittery, progress=False, passes=3)
    specs = [space.decode(v) for v in space.sample(6, seed=3)]
    assert len(calls) == 18 and [c.name for c in calls[:6]] == [c.name for c in calls[6:12]]
    np.testing.assert_allclose(report.measured_ms, [2.0 * _hand_sum(s)[0] for s in specs], rtol=1e-12)
    assert report.passes == 3 and report.pass_spread == pytest.approx(0.4)
    assert report.cache_share_mb == []  # the caller measured: this machine's cache says nothing about it
    assert report.within_10pct_calibrated == 1.0
    with pytest.raises(ValueError, match="passes must be a positive integer"):
        validate_lut(str(tmp_path / "t.db"), "torch", n=6, space=space, build_missing=False, passes=0,
                     measure_network=jittery, progress=False)
    with pytest.raises(ValueError, match="recheck_blocks must be an integer >= 0"):
        validate_lut(str(tmp_path / "t.db"), "torch", n=6, space=space, build_missing=False, recheck_blocks=-1,
                     measure_network=jittery, progress=False)


def test_a_repeat_reports_how_far_each_network_moved(tmp_path):
    """Validating the same networks again reports now / then - 1 per network measured before (the
    machine's repeatability); a first run has none, and networks of another seed are not matched."""
    space = _tiny()
    lut = str(tmp_path / "t.db")
    _synthetic_lut(lut, space, np.concatenate([space.sample(6, seed=3), space.sample(6, seed=4)]))
    factor = {"x": 1.0}
    timer = lambda spec: factor["x"] * 2.0 * _hand_sum(spec)[0]  # noqa: E731
    first = validate_lut(lut, "torch", n=6, space=space, seed=3, build_missing=False, measure_network=timer,
                         progress=False, passes=1)
    assert first.moved_since_last == []
    factor["x"] = 1.2
    again = validate_lut(lut, "torch", n=6, space=space, seed=3, build_missing=False, measure_network=timer,
                         progress=False, passes=1)
    np.testing.assert_allclose(again.moved_since_last, [0.2] * 6, rtol=1e-9)
    other = validate_lut(lut, "torch", n=6, space=space, seed=4, build_missing=False, measure_network=timer,
                         progress=False, passes=1)
    same = {tuple(v) for v in space.sample(6, seed=3)} & {tuple(v) for v in space.sample(6, seed=4)}
    assert len(other.moved_since_last) == len(same)


def test_cli_notes_a_machine_that_does_not_repeat_its_timings(capsys):
    """When the networks measured again moved a median above UNREPEATABLE_MOVE, the CLI says that
    the machine, not the table, bounds the share; not below it, nor with nothing measured before."""
    from types import SimpleNamespace

    from gpunet.cli import search as cli_search
    from gpunet.latency.machine import UNREPEATABLE_MOVE

    for moved in ([], [UNREPEATABLE_MOVE / 2, -UNREPEATABLE_MOVE / 2, 0.3]):
        cli_search._note_unrepeatable(SimpleNamespace(moved_since_last=moved))
        assert capsys.readouterr().err == ""
    cli_search._note_unrepeatable(SimpleNamespace(moved_since_last=[0.078, -0.09, 0.01]))
    assert "the 3 networks measured before moved a median 7.8% since" in capsys.readouterr().err

