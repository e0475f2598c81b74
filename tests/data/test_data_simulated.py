"""Tests for nnboundary.data.simulated and the train/test split."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from nnboundary.data import (
    SIMULATED,
    Dataset,
    make_difficult_sectors,
    make_disc,
    make_iris_setosa,
    make_moons,
    make_plate,
    make_sectors_not_separable,
    make_simulated,
    make_three_blobs,
    make_two_blobs,
    train_test_split,
)

SEPARABLE, NOT_SEPARABLE = 1e-5, 1e-6      # LP margin thresholds (features rescaled to [-1, 1])


def lp_margin(X: np.ndarray, y: np.ndarray, pos: int | None = None) -> float:
    """Largest t such that some (w, b) with ||w||_inf <= 1 has s_i (w.x_i + b) >= t for all i.

    ``s_i = +1`` for ``y == pos`` (default: label 1), else -1. The data are rescaled by their
    largest absolute coordinate first. t > 0 iff the two groups are strictly linearly separable;
    t == 0 (up to solver tolerance 1e-7) otherwise.
    """
    pos = 1 if pos is None else pos
    Xs = X / np.abs(X).max()
    s = np.where(y == pos, 1.0, -1.0)
    n, d = Xs.shape
    A = np.hstack([-s[:, None] * Xs, -s[:, None], np.ones((n, 1))])       # -s(w.x + b) + t <= 0
    res = linprog(np.r_[np.zeros(d + 1), -1.0], A_ub=A, b_ub=np.zeros(n),
                  bounds=[(-1, 1)] * d + [(None, None), (None, 1)], method="highs")
    assert res.status == 0, res.message
    return -res.fun


def test_lp_margin_oracle_on_known_cases():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    assert lp_margin(X, np.array([0, 0, 1, 1])) == pytest.approx(0.5, abs=1e-9)   # w = (1, 0), gap 3 of 3
    assert lp_margin(X, np.array([0, 1, 1, 0])) < NOT_SEPARABLE                  # XOR


# ---------------------------------------------------------------------------------------- generic

@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_every_registered_set_has_the_documented_form(name):
    ds = make_simulated(name, n_samples=None if name == "iris" else 300, seed=3)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.X.dtype == np.float64 and ds.y.dtype == np.int64
    assert ds.X.ndim == 2 and ds.y.shape == (len(ds.X),)
    assert len(ds.X) == (150 if name == "iris" else 300)
    assert np.isfinite(ds.X).all()
    assert set(np.unique(ds.y)) == set(range(ds.n_classes)) and ds.n_classes >= 2
    assert ds.params["class_counts"] == np.bincount(ds.y).tolist()
    json.dumps(ds.params)                                             # params are serialisable
    assert SIMULATED[name].__doc__                                    # every entry is documented


@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = (make_simulated(name, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_generators_leave_the_global_rng_alone(name):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    make_simulated(name, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("gen", [make_two_blobs, make_three_blobs, make_plate, make_disc, make_difficult_sectors,
                                 make_sectors_not_separable, make_moons, make_iris_setosa])
def test_scale_multiplies_coordinates_and_nothing_else(gen):
    unit, big = gen(seed=5), gen(scale=1000.0, seed=5)
    np.testing.assert_allclose(big.X, 1000.0 * unit.X, rtol=1e-12)
    np.testing.assert_array_equal(big.y, unit.y)
    assert big.params["scale"] == 1000.0


@pytest.mark.parametrize("name", sorted(SIMULATED))
@pytest.mark.parametrize("seed", [0, 1])
def test_separability_flag_agrees_with_an_lp(name, seed):
    ds = make_simulated(name, seed=seed)
    flag = ds.params["linearly_separable"]
    for a in range(ds.n_classes):                      # every pair of classes
        for b in range(a + 1, ds.n_classes):
            keep = (ds.y == a) | (ds.y == b)
            t = lp_margin(ds.X[keep], ds.y[keep], pos=b)
            if flag is True:
                assert t > SEPARABLE, (name, a, b, t)
            elif flag is False:
                assert t < NOT_SEPARABLE, (name, a, b, t)


@pytest.mark.parametrize("name", ["disc", "sectors_not_sep", "sectors_not_sep_large", "moons"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nonlinear_sets_are_not_linearly_separable(name, seed):
    ds = make_simulated(name, seed=seed)
    assert lp_margin(ds.X, ds.y) < NOT_SEPARABLE


@pytest.mark.parametrize("name", ["blobs", "blobs_large", "plate", "plate_large", "difficult_sectors",
                                  "difficult_sectors_large", "iris"])
def test_linear_sets_are_separable(name):
    ds = make_simulated(name, seed=11)
    assert ds.params["linearly_separable"] is True
    assert lp_margin(ds.X, ds.y) > SEPARABLE


# ------------------------------------------------------------------------------------------ blobs

def test_two_blobs_are_truncated_and_separable_across_many_seeds():
    for seed in range(10):
        ds = make_two_blobs(5000, seed=seed)
        centers = np.array([[0.2, 0.2], [0.8, 0.8]])
        dist = np.linalg.norm(ds.X - centers[ds.y], axis=1)
        assert dist.max() <= 0.4 + 1e-12                    # 4 std
        assert lp_margin(ds.X, ds.y) > 1e-2                  # margin >= 0.024, i.e. clearly separable
    assert ds.class_counts.tolist() == [2500, 2500]


def test_two_blobs_match_their_gaussian_parameters():
    ds = make_two_blobs(20000, seed=0)
    for k, c in enumerate([(0.2, 0.2), (0.8, 0.8)]):
        pts = ds.X[ds.y == k]
        np.testing.assert_allclose(pts.mean(axis=0), c, atol=0.005)       # 5 standard errors
        np.testing.assert_allclose(pts.std(axis=0), 0.1, rtol=0.03)       # truncation lowers std by ~0.1 %


def test_untruncated_blobs_are_plain_gaussians_with_unknown_separability():
    ds = make_two_blobs(4000, truncate=None, seed=0)
    assert ds.params["linearly_separable"] is None
    r = np.linalg.norm(ds.X - np.array([[0.2, 0.2], [0.8, 0.8]])[ds.y], axis=1) / 0.1
    # radius of a 2-D standard Gaussian is Rayleigh: P(r > 2) = exp(-2) = 0.135
    assert abs(np.mean(r > 2) - math.exp(-2)) < 0.02


def test_three_blobs_have_three_balanced_separable_classes():
    ds = make_three_blobs(seed=0)
    assert ds.n_classes == 3 and ds.class_counts.tolist() == [1667, 1667, 1666]
    for k in range(3):                                   # one-vs-rest separable as well
        assert lp_margin(ds.X, ds.y, pos=k) > SEPARABLE
    assert ds.params["linearly_separable"] is True


def test_blobs_large_is_the_original_x100_set():
    ds = make_simulated("blobs_large", n_samples=4000, seed=0)
    np.testing.assert_allclose(ds.X[ds.y == 0].mean(axis=0), [20, 20], atol=1.0)
    np.testing.assert_allclose(ds.X[ds.y == 1].mean(axis=0), [80, 80], atol=1.0)
    np.testing.assert_allclose(ds.X[ds.y == 0].std(axis=0), 10, rtol=0.05)


# ------------------------------------------------------------------------------------ plate, disc

@pytest.mark.parametrize("margin", [0.0, 0.1, 0.2])
def test_plate_label_rule_and_band(margin):
    ds = make_plate(2000, margin=margin, seed=0)
    z = ds.X.sum(axis=1)
    assert ((ds.X >= 0) & (ds.X <= 1)).all()
    np.testing.assert_array_equal(ds.y == 1, z <= 1 - margin)        # lower-left is class 1
    assert not np.any((z > 1 - margin) & (z < 1 + margin))            # band is empty
    assert abs(ds.class_counts[0] - ds.class_counts[1]) < 0.1 * 2000   # symmetric in expectation


def test_plate_large_scales_square_and_band():
    ds = make_simulated("plate_large", n_samples=1000, margin=0.2, seed=0)
    z = ds.X.sum(axis=1)
    assert ds.X.max() <= 100 and not np.any((z > 80) & (z < 120))


def test_disc_label_rule_ring_and_class_fraction():
    ds = make_disc(5000, seed=0)
    r = np.linalg.norm(ds.X - 0.5, axis=1)
    np.testing.assert_array_equal(ds.y == 1, r <= 0.19)
    assert not np.any((r > 0.19) & (r < 0.21))
    expected = math.pi * 0.19 ** 2 / (math.pi * 0.19 ** 2 + 1 - math.pi * 0.21 ** 2)     # 0.116
    assert abs(ds.class_counts[1] / 5000 - expected) < 0.02


# ---------------------------------------------------------------------------------------- sectors

def test_difficult_sectors_geometry_and_tiny_margin():
    ds = make_difficult_sectors(5000, seed=0)
    r = np.linalg.norm(ds.X, axis=1)
    assert (ds.X >= 0).all()
    assert (r[ds.y == 0] >= 0.1).all() and (r[ds.y == 0] <= 0.2).all()
    assert (r[ds.y == 1] >= 0.283).all() and (r[ds.y == 1] <= 0.4).all()
    z = ds.X.sum(axis=1)
    assert z[ds.y == 0].max() <= 0.2 * math.sqrt(2) < 0.283 <= z[ds.y == 1].min()
    t_sector = lp_margin(ds.X, ds.y)
    t_blobs = lp_margin(*(lambda b: (b.X, b.y))(make_two_blobs(5000, seed=0)))
    assert 0 < t_sector < 0.02 and t_sector < t_blobs / 5       # separable, but with a tiny margin


def test_sector_class_proportions_follow_the_original_sampler():
    # original: n draws for class 0, 3n for class 1; n=5000 gave 2925 + 5876 (small scale)
    ds = make_difficult_sectors(8801, seed=0)
    assert abs(ds.class_counts[0] - 2925) < 0.01 * 8801
    ds = make_simulated("sectors_not_sep", n_samples=10074, seed=0)        # 2925 + 7149
    assert abs(ds.class_counts[0] - 2925) < 0.01 * 10074
    ds = make_difficult_sectors(1000, class_weights=(1, 1), seed=0)
    assert ds.class_counts.tolist() == [500, 500]


@pytest.mark.parametrize("name, r1", [("difficult_sectors_large", (300, 400)), ("sectors_not_sep_large", (240, 400))])
def test_large_sectors_use_the_original_radii(name, r1):
    ds = make_simulated(name, n_samples=3000, seed=0)
    r = np.linalg.norm(ds.X, axis=1)
    assert r[ds.y == 0].min() >= 0.1 - 1e-9 and r[ds.y == 0].max() <= 200
    assert r[ds.y == 1].min() >= r1[0] - 1e-9 and r[ds.y == 1].max() <= r1[1] + 1e-9


def test_sectors_are_uniform_by_area():
    ds = make_difficult_sectors(20000, class0_radii=(0.0, 0.2), class_weights=(1, 1), seed=0)
    r = np.linalg.norm(ds.X[ds.y == 0], axis=1)
    # uniform on a quarter disc: P(r <= 0.1) = 1/4
    assert abs(np.mean(r <= 0.1) - 0.25) < 0.015


# ------------------------------------------------------------------------------------ moons, iris

def test_moons_equal_sklearn_make_moons_up_to_row_order():
    from sklearn.datasets import make_moons as sk_moons

    ds = make_moons(501, seed=0)
    Xs, ys = sk_moons(501, noise=None, shuffle=False)
    for k in (0, 1):
        ours = ds.X[ds.y == k]
        theirs = Xs[ys == k]
        # x1 is unique along each arc (cos t is monotone), so sorting by it aligns the rows
        np.testing.assert_allclose(ours[np.argsort(ours[:, 0])], theirs[np.argsort(theirs[:, 0])], atol=1e-12)


@pytest.mark.parametrize("n", range(6, 40, 3))
def test_noise_free_moons_are_never_linearly_separable(n):
    ds = make_moons(n, seed=0)
    assert ds.params["linearly_separable"] is False
    assert lp_margin(ds.X, ds.y) < NOT_SEPARABLE


def test_moons_noise_option():
    clean, noisy = make_moons(400, seed=0), make_moons(400, noise=0.1, seed=0)
    residual = np.abs(np.linalg.norm(noisy.X - np.array([[0, 0], [1, 0.5]])[noisy.y], axis=1) - 1)
    assert 0.03 < residual.mean() < 0.2 and noisy.params["noise"] == 0.1
    np.testing.assert_allclose(np.linalg.norm(clean.X - np.array([[0, 0], [1, 0.5]])[clean.y], axis=1), 1)


def test_iris_setosa_vs_rest():
    ds = make_iris_setosa()
    assert ds.X.shape == (150, 4) and ds.class_counts.tolist() == [50, 100]
    assert ds.X[ds.y == 0, 2].max() < 2.0 <= 3.0 <= ds.X[ds.y == 1, 2].min()     # petal length
    sub = make_iris_setosa(60, features=(2, 3), seed=1)
    assert sub.X.shape == (60, 2) and lp_margin(sub.X, sub.y) > SEPARABLE
    assert make_iris_setosa(features=(0, 1)).params["linearly_separable"] is None


# -------------------------------------------------------------------------------- make_simulated

def test_make_simulated_overrides_and_defaults():
    assert make_simulated("plate").n_samples == 1000
    assert make_simulated("difficult_sectors_large").params["scale"] == 1000.0
    assert make_simulated("difficult_sectors_large", scale=1.0).params["class1_radii"] == [0.3, 0.4]
    assert make_simulated("plate", margin=0.3).params["margin"] == 0.3


def test_make_simulated_unknown_name_suggests():
    with pytest.raises(ValueError, match="moons"):
        make_simulated("moon")


def test_make_simulated_unknown_keyword_lists_accepted():
    with pytest.raises(TypeError, match="margin"):
        make_simulated("moons", margin=0.1)


@pytest.mark.parametrize("call", [
    lambda: make_plate(0), lambda: make_plate(10, margin=1.0), lambda: make_plate(10, scale=-1.0),
    lambda: make_disc(10, radius=0.2, margin=0.3), lambda: make_difficult_sectors(10, class0_radii=(0.3, 0.2)),
    lambda: make_difficult_sectors(10, class_weights=(1, 0)), lambda: make_moons(10, noise=-1.0),
    lambda: make_two_blobs(10, truncate=0.0), lambda: make_iris_setosa(features=(4,)),
    lambda: make_iris_setosa(151), lambda: make_plate(2.5),
])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------------------- split

def test_split_is_stratified_disjoint_and_deterministic():
    ds = make_disc(1000, seed=0)                               # unbalanced classes (~116 vs ~884)
    train, test = train_test_split(ds, test_fraction=0.1, seed=0)
    assert train.n_samples + test.n_samples == 1000
    for k in (0, 1):
        assert test.class_counts[k] == round(0.1 * ds.class_counts[k])
    rows = {tuple(r) for r in np.vstack([train.X, test.X])}
    assert rows == {tuple(r) for r in ds.X}                    # a partition of the data
    again = train_test_split(ds, test_fraction=0.1, seed=0)[1]
    np.testing.assert_array_equal(again.X, test.X)
    other = train_test_split(ds, test_fraction=0.1, seed=1)[1]
    assert not np.array_equal(other.X, test.X)
    assert test.params["split"] == "test" and test.params["split_seed"] == 0 and test.name == "disc"


def test_split_keeps_a_tiny_class_on_both_sides():
    ds = Dataset(X=np.arange(24.0).reshape(12, 2), y=[0] * 10 + [1] * 2, name="toy")
    train, test = train_test_split(ds, test_fraction=0.1)
    assert train.class_counts.tolist() == [9, 1] and test.class_counts.tolist() == [1, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(make_plate(50), test_fraction=fraction)


def test_split_rejects_singleton_class():
    ds = Dataset(X=np.zeros((5, 2)), y=[0, 0, 0, 0, 1], name="toy")
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(ds)


def test_dataset_validates_shapes():
    with pytest.raises(ValueError, match="n_samples, n_features"):
        Dataset(X=np.zeros(5), y=np.zeros(5), name="bad")
    with pytest.raises(ValueError, match="shape"):
        Dataset(X=np.zeros((5, 2)), y=np.zeros(4), name="bad")
    with pytest.raises(ValueError, match="integers"):
        Dataset(X=np.zeros((2, 2)), y=np.array([0.5, 1.0]), name="bad")


# --------------------------------------------------------------------------- cs_ovr_blobs ("which SVM?")
def _cs_ovr_angle(X: np.ndarray, y: np.ndarray) -> float:
    """Angle (degrees) between the hard-margin Crammer-Singer and one-vs-rest SVM directions of (X, y)."""
    from nnboundary.metrics import direction_angle
    from nnboundary.svm import MaxMarginClassifier

    cs = MaxMarginClassifier(C=None, multiclass="crammer_singer").fit(X, y)
    ovr = MaxMarginClassifier(C=None, multiclass="ovr").fit(X, y)
    return direction_angle(np.atleast_2d(cs.coef_), np.atleast_2d(ovr.coef_))


@pytest.mark.parametrize("name, dim", [("cs_ovr_blobs", 2), ("cs_ovr_blobs_16d", 16)])
def test_cs_ovr_blobs_are_seeded_with_the_right_shapes(name: str, dim: int) -> None:
    a, b = make_simulated(name, n_samples=203, seed=4), make_simulated(name, n_samples=203, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, make_simulated(name, n_samples=203, seed=5).X)
    assert a.X.shape == (203, dim) and a.name == name
    assert a.class_counts.tolist() == [51, 51, 51, 50]
    assert a.params["linearly_separable"] is True and a.params["dim"] == dim
    # every point within truncate * std of its class centre (centres in the first two coordinates)
    centres = np.zeros((4, dim))
    centres[:, :2] = a.params["centers"]
    radius = a.params["truncate"] * np.asarray(a.params["stds"])
    assert np.all(np.linalg.norm(a.X - centres[a.y], axis=1) <= radius[a.y] + 1e-12)


@pytest.mark.parametrize("name", ["cs_ovr_blobs", "cs_ovr_blobs_16d"])
def test_cs_ovr_blobs_crammer_singer_and_ovr_differ(name: str) -> None:
    ds = make_simulated(name, n_samples=200, seed=0)
    assert _cs_ovr_angle(ds.X, ds.y) >= 10.0


def test_a_symmetric_layout_does_not_separate_the_two_svms() -> None:
    # the control: equal spreads and near-equidistant centres give nearly the same CS and OvR directions, so the
    # assertion above is a property of the cs_ovr layout, not of any four blobs
    ds = make_three_blobs(300, seed=0)
    assert _cs_ovr_angle(ds.X, ds.y) < 10.0
    with pytest.raises(ValueError, match="far_std"):
        make_simulated("cs_ovr_blobs", far_std=0.0)
    with pytest.raises(ValueError, match="dim"):
        make_simulated("cs_ovr_blobs", dim=1)
