"""Latency lookup table: real measurements, concurrent fills, bad files, vectorised estimates."""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpunet.cli import main as cli_main
from gpunet.search import SearchSpace
from gpunet.search.lut.calibration import Calibration
from gpunet.search.lut.codes import block_slots
from gpunet.search.lut.estimate import LatencyEstimator, estimate_spec
from gpunet.search.lut import (BlockKey, LatencyTable, LUTDeviceMismatch, LUTError, build_lut, network_blocks,
                               spec_blocks)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_FP = {"id": "feedfacecafe", "backend": "onnxruntime", "cpu": "Some Other CPU", "libraries": {"onnxruntime": "0"}}


def _tiny_keys():
    """Three small blocks (a few ms of work to measure)."""
    return [BlockKey("head", "standard", 3, 16, 3, 2, 1.0, False, "swish", 32, 32),
            BlockKey("irb", "standard", 16, 24, 3, 2, 3.0, True, "relu", 16, 16),
            BlockKey("fused_irb", "standard", 16, 16, 5, 1, 2.0, False, "swish", 16, 16)]


def _synthetic_value(key: BlockKey) -> float:
    # deterministic, distinct per key: enough to check sums (values need not be realistic)
    return 0.001 * (key.in_channels + 2 * key.out_channels + key.kernel_size * key.height) + 0.5 * key.se


def _synthetic_table(path, space, vectors, fp=FAKE_FP):
    keys = network_blocks(space, vectors)
    with LatencyTable(str(path), backend=fp["backend"], fingerprint=fp, create=True) as t:
        t.put_many((k, {"median_ms": _synthetic_value(k)}) for k in keys)
    return keys


def test_real_tiny_build_with_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from gpunet.latency import device_fingerprint

    path = str(tmp_path / "ort.db")
    keys = _tiny_keys()
    counts = build_lut(path, keys[:2], "onnxruntime", iters=5, warmup=1, threads=1, progress=False)
    assert {k: counts[k] for k in ("requested", "measured", "by_others", "present")} == \
        {"requested": 2, "measured": 2, "by_others": 0, "present": 0}
    assert len(counts["load_avg"]) == 2 and isinstance(counts["busy"], bool)
    # incremental: only the new key is measured
    counts = build_lut(path, keys, "onnxruntime", iters=5, warmup=1, threads=1, progress=False)
    assert counts["measured"] == 1 and counts["present"] == 2
    with LatencyTable(path, backend="onnxruntime", fingerprint=device_fingerprint("onnxruntime")) as t:
        assert len(t) == 3 and t.get_meta("threads") == 1
        rows = {r["key"]: r for r in t.rows()}
        for k in keys:
            r = rows[k.key]
            assert r["source"] == "measured" and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
            assert r["iters"] == 5 and r["kind"] == k.kind and r["height"] == k.height
        assert np.isfinite(t.lookup(keys)).all()
        with pytest.raises(LUTDeviceMismatch, match="1 threads"):
            t.resolve_threads(2)
    # the table refuses another backend
    with pytest.raises(LUTDeviceMismatch, match="'onnxruntime' latencies, not 'torch'"):
        build_lut(path, keys, "torch", progress=False)


def test_two_processes_fill_one_table_without_duplicates(tmp_path):
    path = str(tmp_path / "shared.db")
    space = SearchSpace.small()
    keys = [k for k in network_blocks(space, space.sample(2, seed=4)) if k.kind != "tail"][:16]
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {REPO!r})
        from gpunet.search import SearchSpace
        from gpunet.search.lut import build_lut, network_blocks
        space = SearchSpace.small()
        keys = [k for k in network_blocks(space, space.sample(2, seed=4)) if k.kind != "tail"][:16]
        if sys.argv[1] == "1":
            keys = keys[::-1]
        print(json.dumps(build_lut({path!r}, keys, "torch", iters=3, warmup=1, threads=1, progress=False)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert sum(o["measured"] for o in outs) == len(keys)  # every key measured exactly once
    for o in outs:
        assert o["measured"] + o["by_others"] + o["present"] == len(keys)
    with LatencyTable(path) as t:
        assert len(t) == len(keys) and not t.missing(keys)
        assert t._conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_interrupted_fill_resumes_and_releases_claims(tmp_path):
    path = str(tmp_path / "resume.db")
    keys = _tiny_keys()
    calls = []

    def measure(key):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(key)
        return {"median_ms": 1.0 + len(calls)}

    with LatencyTable(path, backend="onnxruntime", fingerprint=FAKE_FP, create=True) as t:
        with pytest.raises(KeyboardInterrupt):
            t.fill(keys, measure, progress=False)
        assert len(t) == 2
        assert t._conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        counts = t.fill(keys, lambda k: {"median_ms": 9.0}, progress=False)
        assert counts["measured"] == 1 and counts["present"] == 2 and len(t) == 3
        # a claim left by a dead process is taken over
        dead = BlockKey("conv", "standard", 8, 8, 3, 1, 1.0, False, "relu", 8, 8)
        t._conn.execute("INSERT INTO claims VALUES (?, 'x', ?, ?, 0)", (dead.key, os.uname().nodename, 2 ** 22 + 7))
        assert t.fill([dead], lambda k: {"median_ms": 2.0}, progress=False)["measured"] == 1


def test_a_table_another_process_is_still_creating_is_finished_not_refused(tmp_path):
    """A creator's WAL header lands before its schema: a second creator then sees a table-less SQLite file."""
    path = tmp_path / "racing.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")  # what the first process has written so far
    con.close()
    assert path.stat().st_size > 0
    with pytest.raises(LUTError, match="not a gpunet latency table"):
        LatencyTable(str(path))  # a reader still refuses it
    with LatencyTable(str(path), backend="onnxruntime", fingerprint=FAKE_FP, create=True) as t:
        assert len(t) == 0 and t.backend == "onnxruntime"


def test_corrupt_foreign_and_wrong_device_files_fail_clearly(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LUTError, match="garbage.db is not a readable gpunet lookup table"):
        LatencyTable(str(garbage))
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(LUTError, match="not a gpunet latency table"):
        LatencyTable(str(foreign))
    with pytest.raises(LUTError, match="does not exist"):
        LatencyTable(str(tmp_path / "nope.db"))

    other = tmp_path / "other_device.db"
    space = SearchSpace.small()
    _synthetic_table(other, space, space.sample(2))
    from gpunet.latency import device_fingerprint

    with pytest.raises(LUTDeviceMismatch, match="measured on device feedfacecafe.*Use a separate table"):
        LatencyTable(str(other), backend="onnxruntime", fingerprint=device_fingerprint("onnxruntime"))
    with pytest.raises(LUTDeviceMismatch, match="feedfacecafe"):
        build_lut(str(other), _tiny_keys(), "onnxruntime", progress=False)
    # reading (estimating) from another machine's table is fine
    assert len(LatencyTable(str(other))) > 0
    # the CLI reports it as an error, not a traceback
    assert cli_main(["lut", "build", "--lut", str(other), "--backend", "onnxruntime", "--space", "small",
                     "--n", "1", "--quiet"]) == 1
    # damaged metadata
    con = sqlite3.connect(other)
    con.execute("UPDATE meta SET value = 'gpunet-lut/99' WHERE name = 'format'")
    con.commit()
    con.close()
    with pytest.raises(LUTError, match="unsupported table format 'gpunet-lut/99'"):
        LatencyTable(str(other))


def test_vectorised_estimate_equals_hand_sum(tmp_path):
    space = SearchSpace()
    vectors = space.sample(64, seed=7)
    vectors[0, space.gene_index(5, "layers")] = 0
    vectors[1, space.gene_index(7, "layers")] = 0
    vectors = space.canonicalize(vectors)
    path = tmp_path / "syn.db"
    _synthetic_table(path, space, vectors)
    est = LatencyEstimator(str(path), space, fill="error")
    res = est.estimate(vectors)
    assert not res.missing.any() and not res.estimated.any() and not res.calibrated
    with LatencyTable(str(path)) as t:
        for i, v in enumerate(vectors):
            spec = space.decode(v)
            blocks = spec_blocks(spec)
            hand = sum(_synthetic_value(k) for k in blocks)
            assert res.latency_ms[i] == pytest.approx(hand, rel=1e-12)
            assert res.n_blocks[i] == len(spec.layers)
            assert estimate_spec(spec, t) == pytest.approx(hand, rel=1e-12)
        # calibration stored in the table is applied on request
        t.set_meta("calibration", Calibration(0.5, 0.01, 0.2, 10).to_dict())
    cal = LatencyEstimator(str(path), space).estimate(vectors)
    assert cal.calibrated
    np.testing.assert_allclose(cal.latency_ms, 0.5 * res.latency_ms + 0.01 * res.n_blocks + 0.2)


def test_missing_blocks_nan_error_or_costmodel(tmp_path):
    space = SearchSpace.small()
    vectors = space.sample(40, seed=2)
    path = tmp_path / "part.db"
    _synthetic_table(path, space, vectors[:20])
    res = LatencyEstimator(str(path), space).estimate(vectors)
    assert not res.missing[:20].any() and res.missing[20:].any()
    assert np.isnan(res.latency_ms[res.missing]).all() and np.isfinite(res.latency_ms[~res.missing]).all()
    with pytest.raises(LUTError, match="lacks .* block"):
        LatencyEstimator(str(path), space, fill="error").estimate(vectors)
    filled = LatencyEstimator(str(path), space, fill="costmodel").estimate(vectors)
    assert np.isfinite(filled.latency_ms).all()
    assert np.array_equal(filled.estimated, res.missing)  # flagged exactly where the table had gaps
    np.testing.assert_allclose(filled.latency_ms[~res.missing], res.latency_ms[~res.missing])
    est = LatencyEstimator(str(path), space)
    missing = est.missing_keys(vectors)
    with LatencyTable(str(path)) as t:
        assert len(t.missing(missing)) == len(missing) > 0
        assert not t.missing(network_blocks(space, vectors[:20]))


def test_costmodel_fit_ranks_unseen_blocks():
    """Fit on latencies the cost model did not generate (a different formula: hand-counted MACs to
    the power 0.9, per-kind launch costs, SE overhead, 10 % noise) and rank blocks it never saw."""
    from scipy.stats import spearmanr

    from gpunet.search.lut.costmodel import RooflineModel
    from gpunet.search.lut.codes import unpack_fields

    space = SearchSpace.small()
    codes = np.unique(np.concatenate([s.codes for s in block_slots(space, space.sample(64, seed=0))]))
    f = unpack_fields(codes)
    fields = {"kind": f["kind"], "cin": f["cin"], "cout": f["cout"], "k": f["k"], "stride": f["stride"],
              "e": f["e100"] / 100.0, "se": f["se"], "h": f["h"]}
    cin, cout, k, s, e, h = (np.asarray(fields[n], dtype=np.float64) for n in ("cin", "cout", "k", "stride", "e", "h"))
    ho = np.ceil(h / s)
    mid = cin * e
    kind = np.asarray(fields["kind"])
    macs = np.select([kind == 4, kind == 3],  # irb: pw + dw + pw; fused_irb: kxk + pw; others: one conv
                     [cin * mid * h * h + mid * k * k * ho * ho + mid * cout * ho * ho,
                      cin * mid * k * k * ho * ho + mid * cout * ho * ho],
                     cin * cout * k * k * ho * ho)
    launch = np.select([kind == 4, kind == 3], [0.09, 0.06], 0.03)  # a device ~3x slower than the defaults
    rng = np.random.default_rng(0)
    truth = 6e-7 * macs ** 0.9 + launch + 0.015 * np.asarray(fields["se"]) + 0.001 * h
    truth *= rng.lognormal(0.0, 0.1, len(truth))
    idx = rng.permutation(len(truth))
    train, test = idx[: 2 * len(idx) // 3], idx[2 * len(idx) // 3:]
    pick = lambda ix: {n: np.asarray(v)[ix] for n, v in fields.items()}  # noqa: E731
    model = RooflineModel().fit(pick(train), truth[train])
    assert model.fitted and len(test) > 20
    pred = model.predict(pick(test))
    assert spearmanr(pred, truth[test])[0] > 0.85
    # fitting must help on unseen blocks: relative error below the unfitted defaults'
    rel = lambda p: np.median(np.abs(p - truth[test]) / truth[test])  # noqa: E731
    assert rel(pred) < 0.5 * rel(RooflineModel().predict(pick(test)))


def test_export_csv_json_and_cli(tmp_path, capsys):
    space = SearchSpace.small()
    path = tmp_path / "cli.db"
    keys = _synthetic_table(path, space, space.sample(200, seed=0))
    assert cli_main(["lut", "export", "--lut", str(path), "--out", str(tmp_path / "t.csv")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert len(lines) == len(keys) + 1 and lines[0].startswith("key,kind,family,in_channels")
    assert cli_main(["lut", "export", "--lut", str(path), "--out", str(tmp_path / "t.json")]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["device_id"] == "feedfacecafe" and len(data["blocks"]) == len(keys)
    assert cli_main(["lut", "export", "--lut", str(path), "--out", str(tmp_path / "t.txt")]) == 1
    assert not (tmp_path / "t.txt").exists()
    capsys.readouterr()
    assert cli_main(["lut", "info", "--lut", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocks"] == len(keys)

    pool = tmp_path / "pool.npz"
    assert cli_main(["sample", "--n", "200", "--space", "small", "--lut", str(path), "--out", str(pool),
                     "--edges", "0,2,4,100", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(pool) as d:
        assert d["vectors"].shape == (200, 41) and np.isfinite(d["latency_ms"]).all()
        assert np.array_equal(d["labels"], np.searchsorted([0, 2, 4, 100], d["latency_ms"], side="right") - 1)
        assert [g["count"] for g in summary["groups"]] == np.bincount(d["labels"], minlength=3).tolist()
        ref = LatencyEstimator(str(path), space).estimate(space.sample(200, seed=0)).latency_ms
        np.testing.assert_allclose(d["latency_ms"], ref)
    # a pool drives an incremental build: nothing is missing for its own networks
    assert cli_main(["lut", "build", "--lut", str(path), "--space", "small", "--pool", str(pool), "--dry-run",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == 0
    assert cli_main(["sample", "--n", "10", "--lut", str(tmp_path / "missing.db"), "--out", str(pool)]) == 1


def test_refresh_keeps_lower_latency_and_min_statistic(tmp_path):
    space = SearchSpace.small()
    vectors = space.sample(3, seed=9)
    path = str(tmp_path / "refresh.db")
    keys = network_blocks(space, vectors)
    with LatencyTable(path, backend="onnxruntime", fingerprint=FAKE_FP, create=True) as t:
        t.fill(keys, lambda k: {"median_ms": 2.0, "min_ms": 1.5}, progress=False)
        # a slower re-measurement changes nothing but a lower minimum; a faster one replaces the row
        counts = t.fill(keys[:2], lambda k: {"median_ms": 3.0, "min_ms": 1.0}, progress=False, refresh=True)
        assert counts["measured"] == 2
        assert t.get(keys[0]) == 2.0 and t.get(keys[0], "min") == 1.0
        t.fill(keys[:1], lambda k: {"median_ms": 1.2, "min_ms": 1.1}, progress=False, refresh=True)
        assert t.get(keys[0]) == 1.2 and t.get(keys[0], "min") == 1.0
        assert t.fill(keys, lambda k: {"median_ms": 9.0}, progress=False)["measured"] == 0  # nothing missing
        with pytest.raises(ValueError, match="statistic must be one of"):
            t.get(keys[0], "mean")
        by_median = LatencyEstimator(t, space).estimate(vectors)
        by_min = LatencyEstimator(t, space, statistic="min").estimate(vectors)
        for i, v in enumerate(vectors):
            blocks = spec_blocks(space.decode(v))
            assert by_median.latency_ms[i] == pytest.approx(sum(t.get(k) for k in blocks))
            assert by_min.latency_ms[i] == pytest.approx(sum(t.get(k, "min") for k in blocks))
        # a calibration applies only to the statistic it was fitted with
        t.set_meta("calibration", {**Calibration(2.0, 0.0, 0.0, 5).to_dict(), "statistic": "min"})
        assert LatencyEstimator(t, space, statistic="min").estimate(vectors).calibrated
        assert not LatencyEstimator(t, space).estimate(vectors).calibrated


# -- the table's own guarantees, on every write path -----------------------------------------------
def _ours(path, threads=None):
    t = LatencyTable(str(path), backend="onnxruntime", fingerprint=FAKE_FP, create=True)
    if threads is not None:
        t.resolve_threads(threads)
    return t


def test_every_write_path_needs_the_measuring_device(tmp_path):
    """put / put_many / fill / merge on a table opened without a fingerprint (read-only use: any
    machine may estimate from it) would store latencies from an unknown device."""
    keys = _tiny_keys()
    _ours(tmp_path / "t.db").close()
    src = _ours(tmp_path / "src.db")
    src.put(keys[0], {"median_ms": 1.0})
    with LatencyTable(str(tmp_path / "t.db")) as t:
        for write in (lambda: t.put(keys[0], {"median_ms": 1.0}),
                      lambda: t.put_many([(keys[1], {"median_ms": 1.0})]),
                      lambda: t.fill(keys, lambda k: {"median_ms": 1.0}, progress=False),
                      lambda: t.merge(src)):
            with pytest.raises(LUTDeviceMismatch, match="fingerprint"):
                write()
        assert len(t) == 0
        # naming the device on fill checks it against the table's
        with pytest.raises(LUTDeviceMismatch, match="feedfacecafe"):
            t.fill(keys, lambda k: {"median_ms": 1.0}, progress=False, fingerprint=dict(FAKE_FP, id="other"))
        assert t.fill(keys, lambda k: {"median_ms": 1.0}, progress=False, fingerprint=FAKE_FP)["measured"] == 3
    src.close()


def test_thread_count_is_enforced_on_merge_and_put(tmp_path):
    keys = _tiny_keys()
    a, b, c = _ours(tmp_path / "a.db", threads=4), _ours(tmp_path / "b.db", threads=2), _ours(tmp_path / "c.db")
    b.put(keys[0], {"median_ms": 1.0})
    with pytest.raises(LUTDeviceMismatch, match="threads"):
        a.merge(b)
    assert len(a) == 0
    with pytest.raises(LUTDeviceMismatch, match="threads"):
        a.put(keys[1], {"median_ms": 1.0, "threads": 2})
    a.put(keys[1], {"median_ms": 1.0, "threads": 4})
    assert c.merge(b) == 1 and c.get_meta("threads") == 2  # an unset count is taken from the merged table
    for t in (a, b, c):
        t.close()


def test_every_hub_model_has_table_keys_and_weight_bytes_match_the_model():
    """Every hub model (distill tails included) maps to keys whose modules chain shape-for-shape
    into the network's output, and the keys' weight bytes are the model's conv / linear weights."""
    import torch

    from gpunet.hub import load_spec
    from gpunet.model import build_model
    from gpunet.registry import list_models
    from gpunet.search.lut.estimate import spec_weight_mb

    names = list_models()
    assert {"gpunet-d1", "gpunet-d2"} <= set(names)
    for name in names:
        spec = load_spec(name)
        keys = spec_blocks(spec)
        model = build_model(spec)
        weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        assert spec_weight_mb(keys) == pytest.approx(weights * 4e-6, rel=1e-9), name
        if spec.tail.pre_logits_channels:
            head_part, pre_logits = keys[-2:]
            assert (head_part.kind, head_part.classes) == ("tail", 0)
            assert (pre_logits.in_channels, pre_logits.out_channels, pre_logits.height, pre_logits.classes) == \
                (spec.tail.out_channels, spec.tail.pre_logits_channels, 1, spec.num_classes)
    # shapes chain through the distill tail's two keys (small input: the check is structural)
    spec = load_spec("gpunet-d1")
    keys = spec_blocks(spec, resolution=64)
    x = torch.randn(keys[0].input_shape)
    with torch.inference_mode():
        for k in keys:
            assert tuple(x.shape) == k.input_shape or (k.height == 1 and x.numel() == np.prod(k.input_shape)), k.key
            x = k.build_module()(x.reshape(k.input_shape))
    assert tuple(x.shape) == (1, spec.num_classes)


def test_lut_build_and_estimate_for_a_distill_model(tmp_path, capsys):
    from gpunet.hub import load_spec

    lut = str(tmp_path / "t.db")
    assert cli_main(["lut", "build", "--lut", lut, "--model", "gpunet-d1", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    keys = spec_blocks(load_spec("gpunet-d1"))
    assert out["blocks"] == len({k.key for k in keys}) and out["missing"] == out["blocks"]
    with LatencyTable(lut, backend="onnxruntime", fingerprint=FAKE_FP, create=True) as t:
        t.put_many((k, {"median_ms": _synthetic_value(k)}) for k in keys)
        assert estimate_spec(load_spec("gpunet-d1"), t) == pytest.approx(sum(_synthetic_value(k) for k in keys))
        t.set_meta("calibration", {**Calibration(2.0, 0.1, 0.5, 10, 0.25).to_dict(), "statistic": "median"})
        from gpunet.search.lut.estimate import spec_weight_mb

        assert estimate_spec(load_spec("gpunet-d1"), t, calibrate=True) == pytest.approx(
            2 * sum(_synthetic_value(k) for k in keys) + 0.1 * len(keys) + 0.25 * spec_weight_mb(keys) + 0.5)
        # a calibration fitted on small networks does not price a 456 px one
        t.set_meta("calibration", {**Calibration(2.0).to_dict(), "statistic": "median", "space": "small-ish",
                                   "resolutions": [64, 128]})
        with pytest.raises(ValueError, match="fitted on 64-128 px .* 456 px"):
            estimate_spec(load_spec("gpunet-d1"), t, calibrate=True)


def test_calibration_of_another_space_is_not_applied(tmp_path):
    space = SearchSpace.small()
    vectors = space.sample(5, seed=1)
    _synthetic_table(tmp_path / "t.db", space, vectors)
    with LatencyTable(str(tmp_path / "t.db")) as t:
        t.set_meta("calibration", {**Calibration(3.0).to_dict(), "space": "another", "statistic": "median"})
    assert not LatencyEstimator(str(tmp_path / "t.db"), space).estimate(vectors).calibrated
    with LatencyTable(str(tmp_path / "t.db")) as t:
        t.set_meta("calibration", {**Calibration(3.0).to_dict(), "space": space.name, "statistic": "median"})
    res = LatencyEstimator(str(tmp_path / "t.db"), space).estimate(vectors)
    assert res.calibrated and np.allclose(res.latency_ms, 3 * res.table_sum_ms)


def test_build_on_a_busy_machine_is_noted_in_the_table(tmp_path, monkeypatch):
    """The load average is read from the OS; here it is pinned to a busy value to check the
    table records the warning (measurements themselves are real ONNX Runtime runs)."""
    import gpunet.search.lut.build as lut_mod

    monkeypatch.setattr(lut_mod, "load_average", lambda: 5.0)
    counts = build_lut(str(tmp_path / "t.db"), _tiny_keys()[:1], "onnxruntime", iters=2, warmup=1, threads=1)
    assert counts["busy"] and counts["load_avg"] == [5.0, 5.0]
    with LatencyTable(str(tmp_path / "t.db")) as t:
        (entry,) = t.get_meta("busy_builds")
        assert entry["measured"] == 1 and entry["limit"] == pytest.approx(1.6)
    monkeypatch.setattr(lut_mod, "load_average", lambda: 0.5)
    quiet = build_lut(str(tmp_path / "t.db"), _tiny_keys()[1:2], "onnxruntime", iters=2, warmup=1, threads=1)
    assert not quiet["busy"]
    with LatencyTable(str(tmp_path / "t.db")) as t:
        assert len(t.get_meta("busy_builds")) == 1


def test_build_refuses_a_precision_the_backend_cannot_run_before_creating_the_table(tmp_path):
    bf16 = [dataclasses.replace(k, precision="bf16") for k in _tiny_keys()]
    tables = tmp_path / "tables"
    tables.mkdir()
    with pytest.raises(ValueError, match="unsupported precision 'bf16' for backend 'onnxruntime'.*fp32, int8"):
        build_lut(str(tables / "t.db"), bf16, "onnxruntime", iters=2, warmup=1, threads=1)
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        build_lut(str(tables / "t.db"), _tiny_keys(), "tensorflow", iters=2, warmup=1, threads=1)
    assert list(tables.iterdir()) == []


def _one_profiled_inference(request, shape):
    """(wall-clock ms, per-node profiling info) of one OpenVINO inference after a warm-up one: the
    counters and the clock cover the same call."""
    import time as _time

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    request.infer({0: x})
    t0 = _time.perf_counter()
    request.infer({0: x})
    return (_time.perf_counter() - t0) * 1e3, request.get_profiling_info()


def test_openvino_int8_blocks_are_timed_by_their_own_nodes():
    """An INT8 block (the NNCF QDQ graph on random inputs, as its wall-clock timing runs it) timed by
    its own nodes: positive, and for one inference never more than that inference's wall clock, which
    also pays the edges and the infer call (the same inference: no timing race)."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from gpunet.export.openvino import compile_openvino, int8_rest_precision
    from gpunet.export.quantize import cpu_activations, int8_graph
    from gpunet.latency.ovkernels import TIMING, own_node_ms
    from gpunet.search.lut.build import measure_block

    key = dataclasses.replace(_tiny_keys()[0], precision="int8")
    kernels = measure_block(key, "openvino", iters=5, warmup=1, threads=1, timing="kernels")
    assert kernels.timing == TIMING and kernels.precision == "int8" and 0 < kernels.min_ms <= kernels.median_ms
    proto, _ = int8_graph(key.build_module().eval(), key.input_shape)
    cpu_activations(proto)
    request = compile_openvino(proto, int8_rest_precision(), 1, perf_count=True).create_infer_request()
    wall_ms, info = _one_profiled_inference(request, key.input_shape)
    assert 0 < own_node_ms(info) <= wall_ms
    assert any(n.node_type == "Convolution" for n in info)  # the quantized convolution ran


def test_openvino_blocks_are_timed_by_their_own_nodes(tmp_path, capsys):
    """``block_timing="kernels"``: blocks timed by OpenVINO's per-node counters, edges left out: for
    the same inference never more than its wall clock; the table records how its blocks were timed."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    from gpunet.export.onnx import export_onnx_proto
    from gpunet.export.openvino import compile_openvino
    from gpunet.latency import device_fingerprint
    from gpunet.latency.ovkernels import EDGE_NODE_TYPES, own_node_ms

    key = _tiny_keys()[0]
    compiled = compile_openvino(export_onnx_proto(key.build_module().eval(), key.input_shape), "fp32", 1,
                                perf_count=True)
    request = compiled.create_infer_request()
    wall_ms, info = _one_profiled_inference(request, key.input_shape)
    assert 0 < own_node_ms(info) <= wall_ms
    assert {n.node_type for n in info} & EDGE_NODE_TYPES  # the edges exist and are left out

    path = str(tmp_path / "ov.db")
    assert build_lut(path, _tiny_keys()[:2], "openvino", iters=5, warmup=1, threads=1,  # kernels: the default
                     progress=False)["measured"] == 2
    with LatencyTable(path, backend="openvino", fingerprint=device_fingerprint("openvino")) as t:
        assert t.block_timing() == "kernels" and t.resolve_block_timing() == "kernels"
        assert all(0 < r["min_ms"] <= r["median_ms"] for r in t.rows())
        with pytest.raises(LUTDeviceMismatch, match="times its blocks 'kernels'; refusing blocks timed 'wall'"):
            t.resolve_block_timing("wall")
    capsys.readouterr()
    assert cli_main(["lut", "info", "--lut", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["block_timing"] == "kernels"


def test_block_timing_is_one_per_table_and_kept_on_merge(tmp_path):
    from gpunet.search.lut.build import measure_block

    keys = _tiny_keys()
    old, new, empty = _ours(tmp_path / "old.db"), _ours(tmp_path / "new.db"), _ours(tmp_path / "empty.db")
    old.put(keys[0], {"median_ms": 1.0})  # filled before timings were recorded: wall clock
    assert old.block_timing() == "wall" and old.resolve_block_timing() == "wall"
    assert empty.block_timing() is None
    new.set_meta("block_timing", "kernels")
    new.put(keys[1], {"median_ms": 0.5})
    with pytest.raises(LUTDeviceMismatch, match="timed 'kernels'.*timed 'wall'"):
        old.merge(new)
    assert empty.merge(new) == 1 and empty.block_timing() == "kernels"
    assert _ours(tmp_path / "ort.db").resolve_block_timing() == "wall"  # the default, except on OpenVINO:
    ov_fp = {**FAKE_FP, "id": "feedfacec0de", "backend": "openvino", "libraries": {"openvino": "0"}}
    with LatencyTable(str(tmp_path / "ov.db"), backend="openvino", fingerprint=ov_fp, create=True) as ov:
        assert ov.resolve_block_timing() == "kernels" and ov.get_meta("block_timing") == "kernels"
    with LatencyTable(str(tmp_path / "ov_old.db"), backend="openvino", fingerprint=ov_fp, create=True) as ov:
        ov.put(keys[0], {"median_ms": 1.0})  # an OpenVINO table filled before timings were recorded
        assert ov.resolve_block_timing() == "wall"
    with LatencyTable(str(tmp_path / "ov_int8.db"), backend="openvino", fingerprint=ov_fp, create=True) as ov:
        assert ov.resolve_block_timing(precisions={"fp32", "int8"}) == "wall"  # NNCF graphs: wall clock
    with pytest.raises(ValueError, match="OpenVINO's per-node counters; this table is 'onnxruntime'"):
        _ours(tmp_path / "ort2.db").resolve_block_timing("kernels")
    with pytest.raises(ValueError, match="must be one of wall, kernels"):
        empty.resolve_block_timing("cpu")
    with pytest.raises(ValueError, match="OpenVINO's per-node counters"):
        measure_block(keys[0], "onnxruntime", timing="kernels")
    for t in (old, new, empty):
        t.close()
