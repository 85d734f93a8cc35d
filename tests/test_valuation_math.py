import math

import numpy as np
import pytest

from gmv_store.valuation import average_value, credits, identical_class_ratio


def test_credits_hand_worked():
    # d = [0, 1, 2], q = 1: weights e^0, e^-1, e^-2 over their sum.
    e1, e2 = math.exp(-1), math.exp(-2)
    z = 1 + e1 + e2
    got = credits([0.0, 1.0, 2.0], 1.0)
    assert got == pytest.approx([1 / z, e1 / z, e2 / z], abs=1e-15)
    assert got[0] == pytest.approx(0.6652409557748219)


def test_credits_scale_with_quality_and_sum_to_q():
    d = [0.3, 0.31, 0.5, 0.9]
    for q in (0.2, 1.0, 3.5):
        c = credits(d, q)
        assert c.sum() == pytest.approx(q, rel=1e-12)
        assert np.all(np.diff(c) <= 0)  # closer contributors get more
    assert credits(d, 2.0) == pytest.approx(2 * credits(d, 1.0))


def test_credits_stable_for_large_distances():
    # exp(-1000) underflows to 0 in float64; the shifted softmax does not.
    c = credits([1000.0, 1001.0], 1.0)
    assert np.isfinite(c).all()
    assert c == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])


def test_credits_equal_distances_split_evenly():
    assert credits([0.7] * 4, 1.0) == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf"), 1.0]])
def test_credits_reject_non_finite(bad):
    with pytest.raises(ValueError):
        credits(bad, 1.0)


@pytest.mark.parametrize("q", [0.0, -1.0, float("nan")])
def test_credits_reject_non_positive_quality(q):
    with pytest.raises(ValueError):
        credits([0.1], q)


def test_average_value_is_mean_over_generated():
    # contributor credited 0.5 and 0.25 by two of m = 4 generated images
    assert average_value(0.75, 4) == pytest.approx(0.1875)
    with pytest.raises(ValueError):
        average_value(1.0, 0)


def test_identical_class_ratio():
    assert identical_class_ratio(["1", "1", "7", "1"], "1") == 0.75
    assert math.isnan(identical_class_ratio([], "1"))


def test_credits_rows_equal_credits_row_by_row_bit_for_bit():
    """Refresh computes Eq. 6 for many images at once: each row must be exactly what
    `credits` gives that image (the credits are compared with a recompute by `verify`)."""
    from gmv_store.valuation import credits_rows

    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 8, 9, 50, 129, 300):
        d = rng.random((30, n)) * 10 ** rng.uniform(-3, 3)
        d[0] = 0.5  # equal distances
        q = rng.random(30) + 0.01
        got = credits_rows(np.concatenate([d, d], axis=1)[:, :n], q)  # a strided view, as a slice of wider rows
        for i in range(30):
            assert np.array_equal(got[i], credits(d[i], float(q[i])))
    assert credits_rows(np.zeros((0, 5)), np.zeros(0)).shape == (0, 5)
    with pytest.raises(ValueError, match="finite"):
        credits_rows([[0.1, np.inf]], [1.0])
    with pytest.raises(ValueError, match="quality"):
        credits_rows([[0.1, 0.2]], [0.0])
    with pytest.raises(ValueError, match="must be"):
        credits_rows([0.1, 0.2], [1.0])
