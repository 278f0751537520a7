"""The noise floor of a validation: the measurement's own repeatability and the share within
±10 % it leaves a table without error (gpunet.search.lut.noise)."""
import math

import numpy as np
import pytest

from gpunet.search.lut.noise import median_standard_error, noise_floor, reachable_share, repeat_sd, sum_noise


def test_standard_error_of_a_median_of_passes():
    steady = np.tile([[2.0, 5.0]], (4, 1))
    assert median_standard_error(steady).tolist() == [0.0, 0.0]
    d = np.log([1.0, 1.1, 0.9, 1.05, 0.95])
    passes = np.exp(np.stack([d, 2 * d], axis=1))  # second network twice as noisy
    se = median_standard_error(passes)
    assert se[0] == pytest.approx(math.sqrt(math.pi / 2) * d.std(ddof=1) / math.sqrt(5))
    assert se[1] == pytest.approx(2 * se[0])
    assert np.isnan(median_standard_error(np.ones((1, 3)))).all()  # one pass: unknown
    with pytest.raises(ValueError, match="per_pass"):
        median_standard_error([1.0, 2.0])


def test_repeat_spread_of_one_timing():
    first = np.array([1.0, 2.0, 3.0, 4.0])
    again = first * np.exp([0.1, -0.1, 0.1, -0.1])
    assert repeat_sd(first, again) == pytest.approx(1.4826 * 0.1 / math.sqrt(2))
    assert repeat_sd(first, first) == 0.0
    six = np.arange(1.0, 7.0)  # one timing 2x off does not set the spread
    assert repeat_sd(six, six * np.exp([0.1, -0.1, 0.1, -0.1, 0.1, 0.7])) == pytest.approx(1.4826 * 0.1 / math.sqrt(2))
    assert np.isnan(repeat_sd([1.0, np.nan], [1.0, 2.0]))  # one valid pair
    with pytest.raises(ValueError, match="pair up"):
        repeat_sd([1.0, 2.0], [1.0])


def test_a_sum_averages_independent_blocks_but_not_a_repeated_one():
    ms = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, np.nan], [1.0, 3.0]])
    counts = np.array([[1, 0], [1, 1], [4, 0], [1, 1]])
    noise = sum_noise(ms, counts, 0.1)
    assert noise[0] == pytest.approx(0.1)  # one block: its own error
    assert noise[1] == pytest.approx(0.1 / math.sqrt(2))  # two alike: averaged
    assert noise[2] == pytest.approx(0.1)  # one block run 4 times: one timing, one error
    assert noise[3] == pytest.approx(0.1 * math.sqrt(10) / 4)  # weighted by their share of the sum


def test_reachable_share_is_the_normal_mass_within_the_tolerance():
    assert reachable_share([0.0, 0.0]) == 1.0
    assert reachable_share([0.10 / 1.959964]) == pytest.approx(0.95, abs=1e-6)
    assert reachable_share([0.10 / 1.959964, np.nan, 1e-9]) == pytest.approx(0.975, abs=1e-6)
    assert np.isnan(reachable_share([np.nan]))


def test_noise_floor_combines_the_networks_and_their_block_sums():
    ms, counts = np.array([[1.0], [2.0]]), np.array([[1], [1]])
    quiet = noise_floor(np.ones((3, 2)), ms, counts, np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert quiet.to_dict() == {"block_repeat_sd": 0.0, "blocks_rechecked": 2, "network_median_se": 0.0,
                               "within_10pct": 1.0, "block_pairs_ms": [[1.0, 1.0], [2.0, 2.0]]}
    first = np.array([1.0, 1.0, 1.0, 1.0])
    again = first * np.exp([0.08, -0.08, 0.08, -0.08])
    noisy = noise_floor(np.ones((3, 2)), ms, counts, first, again)
    sd = 1.4826 * 0.08 / math.sqrt(2)
    assert noisy.block_repeat_sd == pytest.approx(sd)
    assert noisy.within_10pct == pytest.approx(math.erf(0.1 / (sd * math.sqrt(2))))
    no_blocks = noise_floor(np.ones((3, 2)), ms, counts, np.empty(0), np.empty(0))
    assert no_blocks.block_repeat_sd is None and no_blocks.blocks_rechecked == 0 and no_blocks.within_10pct == 1.0
    one_pass = noise_floor(np.ones((1, 2)), ms, counts, np.empty(0), np.empty(0))
    assert one_pass.network_median_se is None and one_pass.within_10pct is None
