"""Tests for nnboundary.plot: grids, displays (computed without a figure), figure files, atomic writes."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnboundary.plot import (  # noqa: E402
    BoundaryDisplay,
    OverlayDisplay,
    auto_window,
    fit_inverse_log,
    make_grid,
    plot_alignment_curves,
    plot_input_space,
    plot_nn_vs_svm,
    plot_snapshots,
    plot_three_panel_bias,
    plot_training_data,
    snapshot_displays,
)
from nnboundary.plot._grid import display_subset  # noqa: E402

RES = 25  # grid resolution: small keeps the tests fast


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def scatters(ax) -> list[int]:
    """Number of points in each scatter of ``ax``."""
    return [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


@pytest.fixture
def binary():
    """Two separable blobs, a (1, 2) SVM-like direction and a (2, 2) NN-like head."""
    rng = np.random.default_rng(0)
    H = np.r_[rng.normal([0.0, 3.0], 0.5, (30, 2)), rng.normal([3.0, 0.0], 0.5, (30, 2))]  # (60, 2)
    y = np.repeat([0, 1], 30)
    W_svm, b_svm = np.array([[1.0, -1.0]]), np.array([0.0])
    W_nn, b_nn = np.array([[-0.9, 1.1], [1.0, -1.0]]), np.array([0.2, -0.1])
    support = np.argsort(np.abs(H @ W_svm[0] + b_svm[0]))[:3]
    return H, y, W_nn, b_nn, W_svm, b_svm, support


@pytest.fixture
def three():
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 4.0]])
    y = np.repeat([0, 1, 2], 20)
    H = centers[y] + rng.normal(0, 0.5, (60, 2))  # (60, 2)
    W = np.array([[-1.0, -0.5], [1.0, -0.5], [0.0, 1.0]])
    b = np.array([2.0, -2.0, -1.0])
    return H, y, W, b


def grid_points(disp) -> np.ndarray:
    return np.c_[disp.xx.ravel(), disp.yy.ravel()]  # (R*R, 2)


def png_shape(path) -> tuple[int, int]:
    return mpimg.imread(path).shape[:2]


# ----------------------------------------------------------------------------------------------- windows, grids
def test_auto_window_pads_by_margin():
    P = np.array([[0.0, -1.0], [10.0, 1.0]])
    assert auto_window(P, margin=0.0) == (0.0, 10.0, -1.0, 1.0)
    assert auto_window(P, margin=0.1) == pytest.approx((-1.0, 11.0, -1.2, 1.2))


def test_auto_window_degenerate_axis_has_positive_span():
    P = np.array([[0.0, 0.0], [5.0, 0.0], [3.0, 0.0]])  # a dead unit: second coordinate constant
    xmin, xmax, ymin, ymax = auto_window(P)
    assert xmin < 0 < 5 < xmax and ymin < 0 < ymax


def test_make_grid_shapes_and_corners():
    xx, yy, G = make_grid((-1, 2, 0, 5), 7)
    assert xx.shape == yy.shape == (7, 7) and G.shape == (49, 2)
    np.testing.assert_array_equal(G, np.c_[xx.ravel(), yy.ravel()])
    assert (xx.min(), xx.max(), yy.min(), yy.max()) == (-1, 2, 0, 5)
    assert np.all(np.diff(xx[0]) > 0) and np.all(np.diff(yy[:, 0]) > 0)


@pytest.mark.parametrize("window", [(1, 0, 0, 1), (0, 1, 2, 2), (0, 1, 0, np.inf), (0, 1, 0)])
def test_bad_window_raises(window):
    with pytest.raises(ValueError, match="window"):
        make_grid(window, 10)


@pytest.mark.parametrize("resolution", [1, 0, 2.5, True])
def test_bad_resolution_raises(resolution):
    with pytest.raises(ValueError, match="resolution"):
        make_grid((0, 1, 0, 1), resolution)


# ----------------------------------------------------------------------------------------------- displays
def test_binary_region_equals_direct_prediction(binary):
    H, y, _, _, W, b, _ = binary
    disp = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES)
    G = grid_points(disp)
    expected = (G @ W[0] + b[0] > 0).astype(int)  # positive decision value -> class index 1
    np.testing.assert_array_equal(disp.region.ravel(), expected)
    np.testing.assert_allclose(disp.boundary_fields[0].ravel(), G @ W[0] + b[0])


def test_k_class_region_equals_argmax(three):
    H, y, W, b = three
    disp = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES)
    np.testing.assert_array_equal(disp.region.ravel(), (grid_points(disp) @ W.T + b).argmax(axis=1))
    assert disp.n_classes == 3
    assert set(np.unique(disp.region)) == {0, 1, 2}


def test_pairwise_fields_separate_the_two_top_classes(three):
    """Where a pair's field is unmasked, its sign tells which of the two classes wins."""
    H, y, W, b = three
    disp = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES)
    assert len(disp.boundary_fields) == 3  # three regions meet: pairs (0,1), (0,2), (1,2) all occur
    S = grid_points(disp) @ W.T + b  # (R*R, 3)
    for f in disp.boundary_fields:
        on = ~np.ma.getmaskarray(f).ravel()
        top2 = np.sort(np.argsort(-S[on], axis=1)[:, :2], axis=1)
        assert (top2 == top2[0]).all()  # one pair per field
        i, j = top2[0]
        np.testing.assert_array_equal(disp.region.ravel()[on] == i, f.ravel()[on] > 0)
        assert np.all(np.isin(disp.region.ravel()[on], [i, j]))


def test_two_row_head_matches_single_direction(binary):
    H, y, W_nn, b_nn, *_ = binary
    two = BoundaryDisplay.from_linear(W_nn, b_nn, H, y, resolution=RES)
    one = BoundaryDisplay.from_linear(W_nn[1:] - W_nn[:1], b_nn[1:] - b_nn[:1], H, y, resolution=RES)
    np.testing.assert_array_equal(two.region, one.region)


def test_from_predictor_reads_labels_scores_and_decisions(three):
    H, y, W, b = three
    ref = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES)
    scores = BoundaryDisplay.from_predictor(lambda P: P @ W.T + b, H, y, resolution=RES)
    labels = BoundaryDisplay.from_predictor(lambda P: (P @ W.T + b).argmax(1), H, y, resolution=RES)
    chunked = BoundaryDisplay.from_predictor(lambda P: P @ W.T + b, H, y, resolution=RES, chunk_size=7)
    for disp in (scores, labels, chunked):
        np.testing.assert_array_equal(disp.region, ref.region)
        assert disp.n_classes == 3
    assert len(labels.boundary_fields) == 3  # one outline per class
    dec = BoundaryDisplay.from_predictor(lambda P: P[:, 0] - 2.0, H, y, resolution=RES)
    np.testing.assert_array_equal(dec.region.ravel(), (grid_points(dec)[:, 0] > 2.0).astype(int))


def test_from_predictor_rejects_bad_output(three):
    H, y, *_ = three
    with pytest.raises(ValueError, match="predictor returned shape"):
        BoundaryDisplay.from_predictor(lambda P: np.zeros(3), H, y, resolution=RES)
    with pytest.raises(ValueError, match="NaN"):
        BoundaryDisplay.from_predictor(lambda P: np.full(len(P), np.nan), H, y, resolution=RES)
    with pytest.raises(TypeError, match="callable"):
        BoundaryDisplay.from_predictor("not a model", H, y)


def test_ten_classes_plot(tmp_path):
    rng = np.random.default_rng(2)
    ang = 2 * np.pi * np.arange(10) / 10
    W, b = np.c_[np.cos(ang), np.sin(ang)], np.zeros(10)  # (10, 2)
    y = rng.integers(0, 10, 500)
    H = W[y] * rng.uniform(1, 3, (500, 1))
    disp = BoundaryDisplay.from_linear(W, b, H, y, resolution=40).plot()
    assert disp.n_classes == 10 and len(disp.lines_) >= 10
    colors = {tuple(c) for c in disp.ax_.collections[-1].get_facecolors()}
    assert len(colors) == 10  # one colour per class


def test_plot_sets_attributes_and_marks_support(binary):
    H, y, _, _, W, b, support = binary
    disp = BoundaryDisplay.from_linear(W, b, H, y, support=support, resolution=RES, title="T").plot()
    assert disp.ax_.get_title() == "T" and disp.figure_ is disp.ax_.figure
    assert disp.surface_ is not None and len(disp.lines_) == 1
    assert sorted(scatters(disp.ax_)) == [len(support), len(y)]  # rings, then all points
    labels = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert "support vectors (3)" in labels and "class 0" in labels


def test_support_as_boolean_mask(binary):
    H, y, _, _, W, b, support = binary
    mask = np.zeros(len(y), bool)
    mask[support] = True
    disp = BoundaryDisplay.from_linear(W, b, H, y, support=mask, resolution=RES)
    np.testing.assert_array_equal(np.sort(disp.support), np.sort(support))


def test_subsampling_caps_drawn_points(binary):
    H, y, _, _, W, b, _ = binary
    disp = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES).plot(max_points=10)
    assert scatters(disp.ax_) == [10]
    assert "10 of 60 points" in disp.ax_.get_legend().get_title().get_text()


def test_display_subset_is_seeded_and_unique():
    a, b, c = display_subset(1000, 100, seed=3), display_subset(1000, 100, seed=3), display_subset(1000, 100, 4)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 100 and not np.array_equal(a, c)
    assert sorted(display_subset(50, 100)) == list(range(50))


def test_explicit_and_auto_window(binary):
    H, y, _, _, W, b, _ = binary
    auto = BoundaryDisplay.from_linear(W, b, H, y, resolution=RES)
    xmin, xmax, ymin, ymax = auto.window
    assert xmin < H[:, 0].min() and H[:, 0].max() < xmax and ymin < H[:, 1].min() and H[:, 1].max() < ymax
    fixed = BoundaryDisplay.from_linear(W, b, H, y, window=(-100, 100, -50, 50), resolution=RES)
    assert fixed.window == (-100, 100, -50, 50)
    fixed.plot()
    assert fixed.ax_.get_xlim() == (-100, 100) and fixed.ax_.get_ylim() == (-50, 50)


# ----------------------------------------------------------------------------------------------- bad input
def test_features_not_2d_say_project_first(binary):
    H, y, _, _, W, b, _ = binary
    H3 = np.c_[H, H[:, :1]]  # (N, 3)
    with pytest.raises(ValueError, match="D=3.*[Pp]roject"):
        BoundaryDisplay.from_linear(np.c_[W, [[0.0]]], b, H3, y)
    with pytest.raises(ValueError, match="D=3.*[Pp]roject"):
        BoundaryDisplay.from_linear(np.c_[W, [[0.0]]], b, H, y)  # weights in 3-D, points in 2-D
    with pytest.raises(ValueError, match="[Pp]roject"):
        plot_training_data(H3, y, "unused.png")


def test_label_and_intercept_errors(three):
    H, y, W, b = three
    with pytest.raises(ValueError, match="K=2"):
        BoundaryDisplay.from_linear(W[:1], b[:1], H, y)  # y has 3 classes, head is binary
    with pytest.raises(ValueError, match="intercept"):
        BoundaryDisplay.from_linear(W, b[:2], H, y)
    with pytest.raises(ValueError, match="shape"):
        BoundaryDisplay.from_linear(W, b, H, y[:-1])
    with pytest.raises(ValueError, match="integer class labels"):
        BoundaryDisplay.from_linear(W, b, H, y + 0.5)


# ----------------------------------------------------------------------------------------------- overlay
def test_overlay_margins_and_agreement(binary):
    H, y, W_nn, b_nn, W_svm, b_svm, support = binary
    over = OverlayDisplay.from_linear_pair(W_nn, b_nn, W_svm, b_svm, H, y, support=support, resolution=RES)
    assert len(over.margin_fields) == 2
    G = grid_points(over)
    np.testing.assert_allclose(over.margin_fields[0].ravel(), G @ W_svm[0] + b_svm[0] - 1)
    nn_pred = (G @ W_nn.T + b_nn).argmax(1)
    svm_pred = (G @ W_svm[0] + b_svm[0] > 0).astype(int)
    assert over.grid_agreement == pytest.approx(np.mean(nn_pred == svm_pred))
    over.plot()
    labels = [t.get_text() for t in over.ax_.get_legend().get_texts()]
    assert {"NN boundary", "SVM boundary", "SVM margin (±1)"} <= set(labels)
    same = OverlayDisplay.from_linear_pair(W_svm, b_svm, W_svm, b_svm, H, y, resolution=RES)
    assert same.grid_agreement == 1.0


def test_overlay_multiclass_has_no_margins_and_checks_k(three):
    H, y, W, b = three
    over = OverlayDisplay.from_linear_pair(W, b, W * 2, b * 2, H, y, resolution=RES)
    assert over.margin_fields == [] and over.grid_agreement == 1.0
    with pytest.raises(ValueError, match="K="):
        OverlayDisplay.from_linear_pair(W, b, np.c_[W.T, W[:1].T].T, np.r_[b, 0.0], H, y)


# ----------------------------------------------------------------------------------------------- figure files
FIGSIZE, DPI = (12.0, 6.0), 10  # -> 120 x 60 pixels: few pixels, but room for the layout in inches


def _figures(binary, three):
    H, y, W_nn, b_nn, W_svm, b_svm, support = binary
    H3, y3, W3, b3 = three
    kw = dict(figsize=FIGSIZE, dpi=DPI)
    steps = [1, 10, 100]
    curves = {"step": np.array(steps + [1000]), "angle_deg": [30.0, 12.0, 6.0, 4.0],
              "margin_ratio": [0.2, 0.6, 0.9, 0.95], "bias_offset": [1.0, 0.5, np.nan, 0.1]}
    return {
        "nn_vs_svm": lambda p: plot_nn_vs_svm(W_nn, b_nn, W_svm, b_svm, H, y, support, p, resolution=RES, **kw),
        "input_space": lambda p: plot_input_space(lambda X: (X[:, 0] > X[:, 1]).astype(int), (W_svm, b_svm),
                                                  H, y, p, resolution=RES, **kw),
        "snapshots": lambda p: plot_snapshots([(s, W3 * s, b3, H3 * s) for s in steps], y3, p,
                                              resolution=RES, **kw),
        "bias": lambda p: plot_three_panel_bias((W3, b3), (W3, b3 + 0.1), (W3, b3 + 1.0), H3, y3, p,
                                                resolution=RES, **kw),
        "curves": lambda p: plot_alignment_curves(curves, p, **kw),
        "training_data": lambda p: plot_training_data(H3, y3, p, **kw),
    }


@pytest.mark.parametrize("name", ["nn_vs_svm", "input_space", "snapshots", "bias", "curves", "training_data"])
def test_figure_writes_png_of_expected_size(tmp_path, binary, three, name):
    path = tmp_path / "sub" / f"{name}.png"  # parent folder is created
    out = _figures(binary, three)[name](path)
    assert out == path and path.stat().st_size > 0
    assert png_shape(path) == (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_default_size_scales_with_panels(tmp_path, binary):
    H, y, W_nn, b_nn, W_svm, b_svm, support = binary
    one = plot_training_data(H, y, tmp_path / "one.png", dpi=20)
    three = plot_nn_vs_svm(W_nn, b_nn, W_svm, b_svm, H, y, support, tmp_path / "three.png", resolution=RES,
                           dpi=20)
    (h1, w1), (h3, w3) = png_shape(one), png_shape(three)
    assert h1 == h3 and w3 == 3 * w1


def test_atomic_write_replaces_and_cleans_up_on_failure(tmp_path, binary):
    H, y, *_ = binary
    target = tmp_path / "data.png"
    target.write_bytes(b"old")
    plot_training_data(H, y, target, dpi=20)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "data.notaformat"
    with pytest.raises(ValueError):
        plot_training_data(H, y, bad, dpi=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.png"]


def test_snapshot_windows_and_predictors(tmp_path, binary):
    H, y, W_nn, b_nn, W_svm, b_svm, _ = binary
    snaps = [(1, W_nn, b_nn, H), (10, (W_svm, b_svm), H * 10), (100, lambda P: P @ W_svm.T + b_svm, H * 100)]
    each = snapshot_displays(snaps, y, resolution=RES)
    assert [d.window for d in each] == [auto_window(s[-1]) for s in snaps]  # features grow: own window
    assert [d.title for d in each] == ["step 1", "step 10", "step 100"]
    shared = snapshot_displays(snaps, y, window="shared", resolution=RES)
    assert len({d.window for d in shared}) == 1 and shared[0].window == each[2].window  # H*100 spans all
    fixed = snapshot_displays(snaps, y, window=(-5, 5, -5, 5), resolution=RES)
    assert all(d.window == (-5, 5, -5, 5) for d in fixed)
    np.testing.assert_array_equal(fixed[1].region, fixed[2].region)  # same SVM, given as (W, b) and as f
    with pytest.raises(ValueError, match="window"):
        snapshot_displays(snaps, y, window="each")
    with pytest.raises(ValueError, match=r"\(step, W, b, H\)"):
        snapshot_displays([(1, H)], y)
    out = plot_snapshots(snaps, y, tmp_path / "s.png", ncols=2, resolution=RES, dpi=10)  # 2 rows x 2 cols
    assert png_shape(out) == (round(2 * 5.0 * 10), round(2 * 4.8 * 10))


def test_estimator_with_coef_is_accepted(tmp_path, binary):
    H, y, W_nn, b_nn, W_svm, b_svm, support = binary

    class Fitted:
        coef_, intercept_ = W_svm, b_svm

    plot_three_panel_bias(Fitted(), (W_nn, b_nn), (W_nn, b_nn + 1), H, y, tmp_path / "b.png", support=support,
                          resolution=RES, dpi=20)
    with pytest.raises(TypeError, match="coef_"):
        plot_three_panel_bias(42, (W_nn, b_nn), (W_nn, b_nn), H, y, tmp_path / "b.png")


# ----------------------------------------------------------------------------------------------- curves
def test_fit_inverse_log_recovers_constant_from_later_half():
    t = np.geomspace(2, 1e5, 20)
    a = 37.0 / np.log(t)
    a[:10] += 100.0  # early transient: outside the later half, must not move the fit
    fit = fit_inverse_log(t, a)
    assert fit["c"] == pytest.approx(37.0) and fit["n_used"] == 10 and fit["r2"] == pytest.approx(1.0)
    assert fit["step_min"] == pytest.approx(t[10]) and fit["step_max"] == pytest.approx(t[-1])
    assert fit_inverse_log(np.r_[0, 1, t], np.r_[5, 5, a], fraction=1.0)["n_used"] == 20  # steps <= 1 dropped
    assert fit_inverse_log(t, a, fraction=1.0)["r2"] < 0.9  # the transient: a poor fit, reported as such
    assert np.isnan(fit_inverse_log([0, 1], [3.0, 2.0])["c"])


def test_alignment_curves_missing_column_and_records(tmp_path):
    with pytest.raises(ValueError, match=r"lacks column.*bias_offset.*available"):
        plot_alignment_curves({"step": [1, 2], "angle_deg": [3, 2], "margin_ratio": [1, 1]}, tmp_path / "c.png")
    records = [{"step": 0, "angle_deg": 40.0}, {"step": 10, "angle_deg": 20.0}, {"step": 100, "angle_deg": 9.0}]
    out = plot_alignment_curves(records, tmp_path / "c.png", metrics=["angle_deg"], dpi=20)  # step 0: symlog
    assert out.stat().st_size > 0


def test_alignment_curves_accept_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"step": [10, 1, 100], "angle_deg": [20.0, 40.0, 9.0], "margin_ratio": [0.5, 0.1, 0.9],
                       "bias_offset": [0.3, 0.5, 0.1]})
    assert plot_alignment_curves(df, tmp_path / "df.png", dpi=20).stat().st_size > 0


# ----------------------------------------------------------------------------------------------- import cost
def test_import_and_compute_do_not_import_matplotlib():
    code = ("import sys, numpy as np; import nnboundary, nnboundary.plot as p; "
            "d = p.BoundaryDisplay.from_linear(np.eye(2), np.zeros(2), np.eye(2), np.array([0, 1]), resolution=5); "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------- several SVMs
def test_nn_vs_svms_draws_each_svm_and_an_overlay_with_a_legend(three, tmp_path):
    from nnboundary.plot.regions import plot_nn_vs_svms

    H, y, W, b = three
    other = (W + np.array([[0.0, 0.3], [0.0, -0.3], [0.2, 0.0]]), b + 0.5)
    path = plot_nn_vs_svms(W, b, [("Crammer-Singer", W, b), ("one-vs-rest", *other)], H, y, np.array([0, 1]),
                           tmp_path / "svms.png", resolution=RES, dpi=40)
    h, w = png_shape(path)
    assert w > 2.5 * h  # three panels side by side: CS regions | OvR regions | overlay
    with pytest.raises(ValueError, match="classes"):
        plot_nn_vs_svms(W, b, [("CS", W[:2], b[:2])], H, y, None, tmp_path / "bad.png", resolution=RES)
    with pytest.raises(ValueError, match="triples"):
        plot_nn_vs_svms(W, b, [], H, y, None, tmp_path / "none.png", resolution=RES)
