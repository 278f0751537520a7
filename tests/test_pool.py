"""The pool: sampled with a latency table, saved, loaded, a latency group selected and searched
(in Python and through `gpunet search run --pool`), old files read, bad files refused."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gpunet.cli import main as cli_main
from gpunet.search import LaMCTS, LatencyTable, Pool, SearchSpace, estimate_latency, network_blocks
from gpunet.search.engine.driver import SearchDriver, SearchSettings
from gpunet.search.engine.journal import Journal
from gpunet.search.pool import POOL_FORMAT, PoolError

FAKE_FP = {"id": "feedfacecafe", "backend": "onnxruntime", "cpu": "Some Other CPU", "libraries": {"onnxruntime": "0"}}
SPACE = SearchSpace.small()


def _block_ms(key) -> float:
    # deterministic and distinct per block (a made-up device: what matters is that sums are exact)
    return 0.001 * (key.in_channels + 2 * key.out_channels + key.kernel_size * key.height) + 0.5 * key.se


@pytest.fixture(scope="module")
def lut(tmp_path_factory) -> str:
    """A table holding every block of the first 20,000 Sobol networks of the small space, seed 0."""
    path = str(tmp_path_factory.mktemp("lut") / "small.lut")
    keys = network_blocks(SPACE, SPACE.sample(20_000, seed=0))
    with LatencyTable(path, backend="onnxruntime", fingerprint=FAKE_FP, create=True) as t:
        t.put_many((k, {"median_ms": _block_ms(k)}) for k in keys)
    return path


def test_sample_save_load_select_a_group_and_search_it(lut, tmp_path):
    pool = Pool.sample(SPACE, 20_000, seed=0, lut=lut, groups=4)
    assert len(pool) == 20_000 and pool.vectors.shape == (20_000, SPACE.num_genes)
    np.testing.assert_array_equal(pool.vectors, SPACE.sample(20_000, seed=0))
    np.testing.assert_allclose(pool.latency_ms, estimate_latency(pool.vectors, lut, SPACE).latency_ms)
    assert np.isfinite(pool.latency_ms).all() and len(pool.edges_ms) == 5
    counts = [g["count"] for g in pool.group_counts()]
    assert sum(counts) == 20_000 and min(counts) > 4_000  # equal-count groups (quantile edges)
    assert pool.source == {"calibrated": False, "lut_device_id": "feedfacecafe", "lut_backend": "onnxruntime",
                           "batch": 1, "precision": "fp32", "statistic": "median"}

    path = tmp_path / "pool.npz"
    pool.save(path)
    loaded = Pool.load(path)
    for name in ("vectors", "latency_ms", "labels", "edges_ms"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(pool, name))
    assert loaded.space == SPACE and loaded.seed == 0 and loaded.source == pool.source
    assert set(loaded.estimate) == {"table_sum_ms", "n_blocks", "estimated", "missing"}

    g2 = loaded.group(2)
    lo, hi = loaded.edges_ms[2], loaded.edges_ms[3]
    assert len(g2) == counts[2] and (g2.labels == 2).all()
    assert ((g2.latency_ms >= lo) & (g2.latency_ms < hi)).all()
    np.testing.assert_array_equal(g2.vectors, loaded.latency_range(lo, hi).vectors)

    algo = LaMCTS(g2, seed=0)  # a Pool is a pool for the algorithms; its rows are the candidates
    rows = {tuple(v) for v in g2.vectors}
    for i in range(3):
        x = algo.ask()
        assert tuple(x) in rows
        algo.tell(x, float(i))
    assert algo.best()[1] == 2.0

    # the saved group is a pool of its own; `--group 2` of the whole pool selects the same candidates
    g2.save(tmp_path / "group2.npz")
    whole = SearchDriver(SearchSettings(pool=str(path), out=str(tmp_path / "d"), budget=1, group=2))
    np.testing.assert_array_equal(whole.vectors, g2.vectors)
    out = tmp_path / "run"
    assert cli_main(["search", "run", "--pool", str(tmp_path / "group2.npz"), "--evaluator", "synthetic",
                     "--algorithm", "lamcts", "--budget", "4", "--engine", "local", "--out", str(out)]) == 0
    recs = Journal(out / "results.jsonl").records()
    assert len(recs) == 4 and all(lo <= r["latency_ms"] < hi and tuple(r["vector"]) in rows for r in recs)


def test_cli_sample_writes_the_documented_schema(lut, tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert cli_main(["sample", "--space", "small", "--n", "300", "--lut", lut, "--groups", "3", "--seed", "0",
                     "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(out, allow_pickle=False) as z:
        assert str(z["format"]) == POOL_FORMAT and int(z["seed"]) == 0
        assert {"vectors", "latency_ms", "labels", "edges_ms", "space_json", "batch", "precision"} <= set(z.files)
        same = Pool.sample(SPACE, 300, seed=0, lut=lut, groups=3)
        np.testing.assert_array_equal(z["labels"], same.labels)
    assert summary["n"] == 300 and [g["count"] for g in summary["groups"]] == [g["count"] for g in
                                                                               same.group_counts()]


def test_a_pool_written_by_gpunet_0_1_loads(tmp_path):
    """`gpunet sample` of the previous release wrote these fields, no format and no batch."""
    vectors = SPACE.sample(50, seed=4)
    latency = 1.0 + vectors[:, 0] / 100.0
    edges = np.array([latency.min(), np.median(latency), np.nextafter(latency.max(), np.inf)])
    labels = np.searchsorted(edges, latency, side="right") - 1
    path = tmp_path / "old.npz"
    np.savez_compressed(path, vectors=vectors, latency_ms=latency, labels=labels, edges_ms=edges, seed=np.array(4),
                        space_json=np.array(SPACE.to_json()), table_sum_ms=latency, n_blocks=np.full(50, 9),
                        estimated=np.zeros(50, bool), missing=np.zeros(50, bool), calibrated=np.array(False),
                        lut_device_id=np.array("abc"), lut_backend=np.array("onnxruntime"))
    pool = Pool.load(path)
    assert pool.seed == 4 and pool.source == {"calibrated": False, "lut_device_id": "abc", "lut_backend": "onnxruntime"}
    np.testing.assert_array_equal(pool.group(1).vectors, vectors[labels == 1])


def _write(path, **fields):
    base = Pool.sample(SPACE, 20, seed=1)
    data = {"vectors": base.vectors, "latency_ms": base.latency_ms, "labels": base.labels,
            "edges_ms": base.edges_ms, "space_json": np.array(SPACE.to_json())}
    data.update(fields)
    np.savez_compressed(path, **{k: v for k, v in data.items() if v is not None})
    return str(path)


@pytest.mark.parametrize("fields, message", [
    ({"labels": None}, r"field 'labels' is missing .*gpunet sample"),
    ({"vectors": np.zeros((20, 40), dtype=np.int64)}, r"field 'vectors' must be an \(n, 41\) integer array"),
    ({"vectors": np.full((20, 41), 7, dtype=np.int64)}, r"field 'vectors': vector 0: gene 0 \(resolution\) is 7"),
    ({"latency_ms": np.zeros(19)}, r"field 'latency_ms' must be one value per network \(20,\)"),
    ({"edges_ms": np.array([3.0, 1.0])}, r"field 'edges_ms' must hold at least two increasing"),
    ({"space_json": np.array("{not json")}, r"field 'space_json' is not JSON"),
    ({"format": np.array("gpunet-pool/9")}, r"pool format 'gpunet-pool/9', this gpunet reads 'gpunet-pool/1'"),
])
def test_bad_pool_files_are_refused_naming_file_and_field(tmp_path, fields, message):
    path = _write(tmp_path / "bad.npz", **fields)
    with pytest.raises(PoolError, match=message) as info:
        Pool.load(path)
    assert str(path) in str(info.value)


def test_not_a_pool_and_cli_errors_are_one_line(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(PoolError, match="not a pool .npz"):
        Pool.load(text)
    assert cli_main(["search", "run", "--pool", str(text), "--evaluator", "synthetic", "--algorithm", "random",
                     "--budget", "1", "--engine", "local", "--out", str(tmp_path / "s")]) == 3  # a bad file
    err = capsys.readouterr().err
    assert "notes.npz: not a pool .npz" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "s" / "search.json")
    assert cli_main(["sample", "--n", "0", "--out", str(tmp_path / "p.npz")]) == 2  # a value the flag cannot take: usage
    assert "--n must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()


def test_selecting_from_a_pool_names_what_is_wrong():
    plain = Pool.sample(SPACE, 30, seed=2)
    assert not plain.has_latency and plain.group_counts() == [] and (plain.labels == -1).all()
    with pytest.raises(ValueError, match="has no latencies .* the whole pool is the candidate set"):
        plain.group(0)
    lat = 1.0 + np.arange(30) / 10.0
    pool = Pool(SPACE, plain.vectors, lat, np.where(lat < 2.0, 0, 1), np.array([1.0, 2.0, 4.5]))
    assert len(pool.group(1)) == 20 and len(pool.latency_range(1.0, 1.5)) == 5
    with pytest.raises(ValueError, match=r"label 3: no network .* \(groups present: \[0, 1\]\)"):
        pool.group(3)
    with pytest.raises(ValueError, match="lo_ms 9.0, hi_ms 10.0: no network"):
        pool.latency_range(9.0, 10.0)
    edges = Pool.sample(SPACE, 30, seed=2, edges_ms=[0.0, 1.0])
    assert (edges.labels == -1).all()  # no latencies: every network outside the groups
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        Pool.sample(SPACE, 30, seed=2, groups=0)


# -- pools larger than memory (issue 25): written chunk by chunk, read a group at a time -----------------

def _assert_same_pool(a: Pool, b: Pool) -> None:
    np.testing.assert_array_equal(a.vectors, b.vectors)
    for name in ("latency_ms", "labels", "edges_ms"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))  # NaN equal to NaN
    assert set(a.estimate) == set(b.estimate) and a.source == b.source and a.seed == b.seed
    for name in a.estimate:
        np.testing.assert_array_equal(a.estimate[name], b.estimate[name])


@pytest.mark.parametrize("with_lut", [True, False])
def test_a_pool_streamed_to_disk_is_the_pool_sample_gives(lut, tmp_path, with_lut):
    table = lut if with_lut else None
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    n = 25_000  # the table holds the blocks of the first 20,000: some networks miss a block (NaN)
    summary = Pool.sample_to(tmp_path / "s.npz", SPACE, n, seed=0, lut=table, groups=4, chunk=4096)
    same = Pool.sample(SPACE, n, seed=0, lut=table, groups=4)
    _assert_same_pool(Pool.load(tmp_path / "s.npz"), same)
    assert summary == same.summary()
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]  # the chunk folder is gone
    if with_lut:
        assert np.isnan(same.latency_ms).any() and summary["missing_blocks"] > 0


def test_one_group_is_read_without_the_rest(lut, tmp_path):
    path = tmp_path / "p.npz"
    Pool.sample_to(path, SPACE, 6000, seed=2, lut=lut, groups=3, chunk=1000)
    whole = Pool.load(path)
    for g in range(3):
        part = Pool.load(path, group=g)
        _assert_same_pool(part, whole.group(g))
        assert f"group {g}" in part.origin
    with pytest.raises(ValueError, match=r"group 7: no network .* \(groups present: \[0, 1, 2\]\)"):
        Pool.load(path, group=7)
    Pool.sample_to(tmp_path / "bare.npz", SPACE, 50, seed=2)  # no table: no latencies, no groups
    with pytest.raises(ValueError, match="group 0: no network"):
        Pool.load(tmp_path / "bare.npz", group=0)


def test_a_failed_stream_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception, match="no_such.lut|not found|does not exist|unable to open"):
        Pool.sample_to(out / "p.npz", SPACE, 100, lut=str(tmp_path / "no_such.lut"))
    assert os.listdir(out) == []
    with pytest.raises(FileNotFoundError, match="directory .* does not exist"):
        Pool.sample_to(tmp_path / "missing" / "p.npz", SPACE, 100)


def test_a_truncated_column_is_refused_naming_file_and_field(lut, tmp_path):
    import zipfile

    path = tmp_path / "p.npz"
    Pool.sample_to(path, SPACE, 2000, seed=0, lut=lut, groups=2)
    cut = tmp_path / "cut.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(cut, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:len(data) // 2] if name == "vectors.npy" else data)
    with pytest.raises(PoolError, match=r"cut.npz: field 'vectors' is truncated"):
        Pool.load(cut, group=0)
