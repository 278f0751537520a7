"""The table estimate's fast paths give exactly what the plain computation gives (issue 25): for
100,000 networks, with some blocks missing from the table, every network's raw sum, weight
megabytes and calibrated latency are equal to the last bit."""
import numpy as np
import pytest

from gpunet.search import SearchSpace
from gpunet.search.lut import LatencyTable
from gpunet.search.lut.calibration import Calibration
from gpunet.search.lut.codes import block_slots, unpack_codes, unpack_fields
from gpunet.search.lut.costmodel import RooflineModel, block_weight_bytes
from gpunet.search.lut.estimate import LatencyEstimator

N = 100_000


def _fields(est, codes):
    f = unpack_fields(codes)
    return {"kind": f["kind"], "cin": f["cin"], "cout": f["cout"], "k": f["k"], "stride": f["stride"],
            "e": f["e100"] / 100.0, "se": f["se"], "h": f["h"], "batch": est.batch,
            "classes": est.space.num_classes, "distill": est.space.family == "distill"}


def _reference(est, vectors, codes, ms):
    """The estimate written plainly: per block slot, a sorted lookup and the weights from the fields
    (``codes`` sorted, ``ms`` their latencies: what the table was given)."""
    total, weight, missing = np.zeros(len(vectors)), np.zeros(len(vectors)), np.zeros(len(vectors), dtype=bool)
    for slot in block_slots(est.space, vectors):
        idx = np.minimum(np.searchsorted(codes, slot.codes), len(codes) - 1)
        found = codes[idx] == slot.codes
        used = slot.counts > 0
        weight += block_weight_bytes(_fields(est, slot.codes)) * 1e-6 * slot.counts
        missing |= used & ~found
        total += np.where(used, np.nan_to_num(np.where(found, ms[idx], np.nan), nan=0.0) * slot.counts, 0.0)
    total[missing] = np.nan
    return total, weight


@pytest.mark.parametrize("space_name, keep", [("small", 0.5), ("paper", 0.99)])
def test_estimates_equal_the_plain_computation_to_the_last_bit(tmp_path, space_name, keep):
    space = SearchSpace.load(space_name)
    vectors = space.sample(N, seed=11)
    codes = np.unique(np.concatenate([s.codes[s.counts > 0] for s in block_slots(space, vectors)]))
    kept = codes[np.random.default_rng(0).random(len(codes)) < keep]  # the rest are missing from the table
    f = unpack_fields(kept)
    ms = RooflineModel().predict({"kind": f["kind"], "cin": f["cin"], "cout": f["cout"], "k": f["k"],
                                  "stride": f["stride"], "e": f["e100"] / 100.0, "se": f["se"], "h": f["h"]})
    path = str(tmp_path / "t.lut")
    with LatencyTable(path, backend="onnxruntime", fingerprint={"id": "t", "backend": "onnxruntime", "cpu": "x"},
                      create=True) as table:
        table.put_many(zip(unpack_codes(kept, space.family), ({"median_ms": float(m)} for m in ms)), source="test")
        table.set_meta("calibration", Calibration(0.8, 0.01, 0.05).to_dict())
    est = LatencyEstimator(path, space)
    got = est.estimate(vectors)
    total, weight = _reference(est, vectors, kept, ms)  # np.unique: kept is sorted
    assert np.isnan(got.table_sum_ms).any() and np.isfinite(got.table_sum_ms).any()  # both paths exercised
    np.testing.assert_array_equal(got.table_sum_ms, total)
    np.testing.assert_array_equal(got.weight_mb, weight)
    np.testing.assert_array_equal(got.latency_ms, est.calibration.apply(total, got.n_blocks, weight))
