"""The hash index the estimator looks block codes up in (issue 25) finds exactly what a sorted
search finds: present codes with their very values, absent ones as missing with NaN values."""
import numpy as np
import pytest

from gpunet.search.lut.codeindex import CodeIndex


def _sorted_reference(codes, values, queries):
    order = np.argsort(codes)
    codes, values = codes[order], values[order]
    idx = np.minimum(np.searchsorted(codes, queries), len(codes) - 1)
    found = codes[idx] == queries
    return found, np.where(found[:, None], values[idx], np.nan)


@pytest.mark.parametrize("n", [1, 7, 5000, 200_000])
def test_lookup_equals_a_sorted_search(n):
    """With 200,000 codes about a tenth share a home slot, so the probing path runs too."""
    rng = np.random.default_rng(n)
    codes = np.unique(rng.integers(0, 1 << 61, size=n))
    values = rng.standard_normal((len(codes), 2))
    values[::5, 1] = np.nan  # a present code may hold NaN: still found
    index = CodeIndex(codes, values)
    queries = np.concatenate([codes, rng.integers(0, 1 << 61, size=n), codes[::3] + 1, [-1, -7, 0]])
    rng.shuffle(queries)
    found, got = index.lookup(queries)
    want_found, want = _sorted_reference(codes, values, queries)
    np.testing.assert_array_equal(found, want_found)
    np.testing.assert_array_equal(got, want)  # bit for bit, NaN where it should be
    assert len(index) == len(codes) and index.nbytes >= 3 * len(codes) * 24


def test_an_empty_index_finds_nothing():
    found, got = CodeIndex(np.zeros(0, dtype=np.int64), np.zeros((0, 3))).lookup(np.array([0, 5, -1]))
    assert not found.any() and got.shape == (3, 3) and np.isnan(got).all()


def test_bad_codes_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        CodeIndex(np.array([3, 3]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        CodeIndex(np.array([-1, 3]), np.zeros((2, 1)))
