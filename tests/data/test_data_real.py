"""Tests for nnboundary.data.real and the file readers, on tiny files written here.

The shared MNIST / CIFAR-10 archives (``<repo>/../shared/data`` or ``/work/shared/data``) and the
Debian Fashion-MNIST package are used when present and skipped otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

from nnboundary.data import (
    ENV_VAR,
    DataFormatError,
    DatasetNotFoundError,
    ImageDataset,
    data_search_dirs,
    default_data_dir,
    load_real,
    read_cifar_batch,
    read_idx,
    read_npz,
)

IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


SHARED = SHARED_DATA if (SHARED_DATA / "mnist.npz").is_file() else None
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_search_path(tmp_path, monkeypatch):
    """No test sees the user's cache or NNBOUNDARY_DATA_DIR."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)


# ----------------------------------------------------------------------------------- file writers

def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f8"): 0x0E}
    arr = np.asarray(arr)
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    header = bytes([0, 0, codes[big.dtype], arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + big.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def tiny_mnist(seed: int = 0, n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": (np.arange(n_train) % 10).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": (np.arange(n_test) % 10).astype(np.uint8)}


def write_mnist_idx(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> Path:
    for key, stem in IDX_NAMES.items():
        write_idx(folder / stem, arrays[key], gz=gz)
    return folder


def tiny_cifar(seed: int = 0, per_batch: int = 20) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                [int(v) for v in (np.arange(per_batch) + i) % 10]) for i, n in enumerate(names)}


def write_cifar(folder: Path, batches) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        with open(folder / name, "wb") as fh:     # the layout of the official python pickles
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, fh, protocol=2)
    return folder


# ---------------------------------------------------------------------------------------- readers

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, ">i4", ">f8"])
def test_read_idx_round_trips(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) * 7 % 251).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / "a-idx3", arr, gz=gz)
    out = read_idx(path)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative and out.shape == (2, 3, 4) and out.flags.writeable


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(DataFormatError, match="magic number"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx(tmp_path / "img", np.zeros((5, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=r"shape \(5, 28, 28\).*3910 data bytes"):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "img", np.arange(4000, dtype=np.uint8).reshape(5, 800) % 7, gz=True)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataFormatError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_cifar_batch_layout(tmp_path):
    batches = tiny_cifar(per_batch=4)
    write_cifar(tmp_path, {"data_batch_1": batches["data_batch_1"]})
    x, y = read_cifar_batch(tmp_path / "data_batch_1")
    data, labels = batches["data_batch_1"]
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8 and y.tolist() == labels
    # row = 1024 R, 1024 G, 1024 B values, each a row-major 32x32 image
    assert x[2, 1, 5, 7] == data[2, 1 * 1024 + 5 * 32 + 7]
    assert x[3, 2, 31, 0] == data[3, 2 * 1024 + 31 * 32]


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_reader_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(DataFormatError, match="refusing to load global posix.getcwd|refusing"):
        read_cifar_batch(path)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps([1, 2, 3]),
                                     pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})])
def test_cifar_reader_rejects_corrupt_batches(tmp_path, content):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match="data_batch_1"):
        read_cifar_batch(path)


def test_read_npz_missing_key_lists_present_keys(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros(3), y_train=np.zeros(3))
    with pytest.raises(DataFormatError, match=r"lacks the arrays \['x_test'\].*holds \['x_train', 'y_train'\]"):
        read_npz(tmp_path / "m.npz", ["x_train", "x_test"])


def test_read_npz_rejects_non_archives(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataFormatError, match="junk.npz"):
        read_npz(tmp_path / "junk.npz", ["x_train"])
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match="single array"):
        read_npz(tmp_path / "one.npy", ["x_train"])


# ------------------------------------------------------------------------------ load_real: MNIST

@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_idx_subfolder(tmp_path, gz):
    arrays = tiny_mnist()
    write_mnist_idx(tmp_path / "MNIST" / "raw", arrays, gz=gz)
    ds = load_real("mnist", data_dir=tmp_path, normalize="none")
    assert isinstance(ds, ImageDataset)
    assert ds.x_train.shape == (60, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (20, 1, 28, 28) and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["x_train"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.settings["format"] == "idx" and ds.settings["source"] == str(tmp_path / "MNIST" / "raw")


def test_classes_are_remapped_in_the_given_order(tmp_path):
    arrays = tiny_mnist()
    write_mnist_idx(tmp_path, arrays)                            # files directly in data_dir
    ds = load_real("mnist", data_dir=tmp_path, classes=(3, 1), normalize="none")
    keep = np.isin(arrays["y_train"], (3, 1))
    np.testing.assert_array_equal(ds.y_train, np.where(arrays["y_train"][keep] == 3, 0, 1))
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["x_train"][keep])      # row order kept
    assert ds.classes == (3, 1) and ds.class_names == ("3", "1")
    assert ds.settings["classes"] == [3, 1] and ds.settings["train_class_counts"] == [6, 6]


def test_normalisations(tmp_path):
    arrays = tiny_mnist()
    write_mnist_idx(tmp_path / "mnist", arrays)
    raw = arrays["x_train"].astype(np.float64)
    unit = load_real("mnist", data_dir=tmp_path, normalize="unit")
    np.testing.assert_allclose(unit.x_train[:, 0], raw / 255, rtol=1e-6)
    std = load_real("mnist", data_dir=tmp_path, normalize="standard")
    m, s = std.settings["mean"][0], std.settings["std"][0]
    assert m == pytest.approx((raw / 255).mean(), rel=1e-12) and s == pytest.approx((raw / 255).std(), rel=1e-12)
    assert abs(std.x_train.mean()) < 1e-5 and std.x_train.std() == pytest.approx(1.0, abs=1e-5)
    # the test set uses the training statistics, not its own
    np.testing.assert_allclose(std.x_test[:, 0], (arrays["x_test"] / 255 - m) / s, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="normalize"):
        load_real("mnist", data_dir=tmp_path, normalize="minmax")


def test_settings_are_json_and_reproduce_the_data(tmp_path):
    write_mnist_idx(tmp_path / "mnist", tiny_mnist())
    ds = load_real("mnist", data_dir=tmp_path, classes=(0, 1, 2), subsample=9, seed=4)
    st = json.loads(json.dumps(ds.settings))
    again = load_real(st["name"], data_dir=tmp_path, classes=st["classes"], subsample=st["subsample"],
                      seed=st["seed"], normalize=st["normalize"], test_subsample=st["test_subsample"])
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_train, ds.y_train)


def test_subsample_is_balanced_and_seeded(tmp_path):
    write_mnist_idx(tmp_path / "mnist", tiny_mnist(n_train=200, n_test=100))
    kw = dict(data_dir=tmp_path, classes=(0, 1, 2), normalize="none")
    a = load_real("mnist", subsample=31, test_subsample=12, seed=1, **kw)
    b = load_real("mnist", subsample=31, test_subsample=12, seed=1, **kw)
    c = load_real("mnist", subsample=31, test_subsample=12, seed=2, **kw)
    assert np.bincount(a.y_train).tolist() == [11, 10, 10] and np.bincount(a.y_test).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    full = load_real("mnist", **kw)                                # a subsample is a subset of the full set
    full_rows = {r.tobytes() for r in full.x_train}
    assert all(r.tobytes() in full_rows for r in a.x_train)


def test_subsample_larger_than_a_class_says_the_limit(tmp_path):
    write_mnist_idx(tmp_path / "mnist", tiny_mnist())                 # 6 images per class
    with pytest.raises(ValueError, match=r"subsample <= 12"):
        load_real("mnist", data_dir=tmp_path, classes=(0, 1), subsample=14)


@pytest.mark.parametrize("classes, match", [((0, 0), "distinct"), ((0, 10), "0..9"), ((1,), "two"),
                                            ((0, "cat"), "cat")])
def test_bad_classes(tmp_path, classes, match):
    with pytest.raises(ValueError, match=match):
        load_real("mnist", data_dir=tmp_path, classes=classes)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="fashion_mnist"):
        load_real("fashion_mnst")


@pytest.mark.parametrize("alias, name", [("CIFAR-10", "cifar10"), ("Fashion-MNIST", "fashion_mnist")])
def test_aliases(tmp_path, alias, name):
    try:
        assert load_real(alias, data_dir=tmp_path, classes=(0, 1), subsample=2, test_subsample=2).name == name
    except DatasetNotFoundError as err:
        assert err.dataset == name


# ------------------------------------------------------------------------- load_real: resolution

def test_missing_data_lists_every_place_and_the_remedies(tmp_path, monkeypatch):
    env_dir = tmp_path / "from-env"
    env_dir.mkdir()
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    with pytest.raises(DatasetNotFoundError) as info:
        load_real("mnist", data_dir=tmp_path / "nowhere")
    err = info.value
    assert isinstance(err, FileNotFoundError) and err.dataset == "mnist"
    msg = str(err)
    for needle in (str(tmp_path / "nowhere"), str(env_dir), str(default_data_dir()), "--data-dir", ENV_VAR,
                   "mnist.npz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "does not exist"):
        assert needle in msg, needle
    assert tmp_path / "nowhere" in err.searched and env_dir / "mnist.npz" in err.searched
    assert env_dir / "MNIST" / "raw" in err.searched


def test_partial_idx_folder_is_reported(tmp_path):
    folder = write_mnist_idx(tmp_path / "mnist", tiny_mnist())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"3 of the 4 IDX files; missing t10k-labels-idx1-ubyte"):
        load_real("mnist", data_dir=tmp_path)


def test_idx_files_in_a_bare_env_folder_are_not_trusted(tmp_path, monkeypatch):
    # MNIST and Fashion-MNIST share file names, so only a named data_dir may hold them directly
    write_mnist_idx(tmp_path / "bare", tiny_mnist())
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "bare"))
    with pytest.raises(DatasetNotFoundError):
        load_real("mnist")
    assert load_real("mnist", data_dir=tmp_path / "bare").settings["format"] == "idx"


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    cache = tmp_path / "xdg-cache" / "nnboundary" / "data"
    assert default_data_dir() == cache
    write_mnist_idx(cache / "mnist", tiny_mnist(seed=1))
    assert load_real("mnist").settings["source"] == str(cache / "mnist")
    write_mnist_idx(tmp_path / "env" / "mnist", tiny_mnist(seed=2))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert load_real("mnist").settings["source"] == str(tmp_path / "env" / "mnist")
    write_mnist_idx(tmp_path / "arg" / "mnist", tiny_mnist(seed=3))
    assert load_real("mnist", data_dir=tmp_path / "arg").settings["source"] == str(tmp_path / "arg" / "mnist")
    assert data_search_dirs(tmp_path / "arg") == [tmp_path / "arg", tmp_path / "env", cache]


def test_corrupt_file_is_a_clear_error_not_a_fallback(tmp_path):
    folder = write_mnist_idx(tmp_path / "mnist", tiny_mnist())
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz"):
        load_real("mnist", data_dir=tmp_path)


def test_idx_images_and_labels_must_agree(tmp_path):
    arrays = tiny_mnist()
    arrays["y_train"] = arrays["y_train"][:-1]
    write_mnist_idx(tmp_path / "mnist", arrays)
    with pytest.raises(DataFormatError, match="59 images"):
        load_real("mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------- load_real: npz files

def test_npz_in_hwc_layout_and_npz_path_as_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 2] * 6, dtype=np.uint8)
    np.savez(tmp_path / "cifar10_airplane_bird.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    ds = load_real("cifar10", data_dir=tmp_path / "cifar10_airplane_bird.npz", classes=("bird", "airplane"),
                   normalize="none")
    assert ds.classes == (2, 0) and ds.x_train.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.y_train, np.where(y == 2, 0, 1))


def test_npz_lacking_requested_classes_is_skipped_with_a_note(tmp_path):
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.array([0, 2, 0, 2], np.uint8)
    np.savez(tmp_path / "cifar10_airplane_bird.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DatasetNotFoundError, match=r"holds only classes \[0, 2\].*classes=\(0, 2\)"):
        load_real("cifar10", data_dir=tmp_path)


def test_npz_with_wrong_image_shape_or_dtype(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 27, 28), np.uint8), y_train=np.array([0, 1]),
             x_test=np.zeros((2, 27, 28), np.uint8), y_test=np.array([0, 1]))
    with pytest.raises(DataFormatError, match=r"\(n, 28, 28\)"):
        load_real("mnist", data_dir=tmp_path, classes=(0, 1))
    np.savez(tmp_path / "mnist.npz", x_train=np.full((2, 28, 28), 0.5), y_train=np.array([0, 1]),
             x_test=np.zeros((2, 28, 28)), y_test=np.array([0, 1]))
    with pytest.raises(DataFormatError, match="uint8"):
        load_real("mnist", data_dir=tmp_path, classes=(0, 1))


# ------------------------------------------------------------------------- load_real: CIFAR-10

def test_load_cifar_batches(tmp_path):
    batches = tiny_cifar(per_batch=20)
    write_cifar(tmp_path / "cifar-10-batches-py", batches)
    ds = load_real("cifar10", data_dir=tmp_path, classes=(0, 2), normalize="none")
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    keep = np.isin(train_labels, (0, 2))
    assert ds.x_train.shape == (keep.sum(), 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train.reshape(len(ds.x_train), -1), train_data[keep])
    np.testing.assert_array_equal(ds.y_train, (train_labels[keep] == 2).astype(int))
    assert ds.class_names == ("airplane", "bird") and ds.settings["format"] == "cifar-python"
    std = load_real("cifar10", data_dir=tmp_path, classes=(0, 2))
    assert len(std.settings["mean"]) == 3
    np.testing.assert_allclose(std.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(axis=(0, 2, 3)), 1, atol=1e-4)


def test_cifar_batches_directly_in_data_dir_and_missing_batch(tmp_path):
    batches = tiny_cifar(per_batch=5)
    write_cifar(tmp_path, batches)
    assert load_real("cifar10", data_dir=tmp_path).x_test.shape == (5, 3, 32, 32)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3"):
        load_real("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------------------- digits

def test_digits_need_no_files_and_have_a_fixed_test_set():
    a = load_real("digits", normalize="unit")
    b = load_real("digits", normalize="unit", seed=5)
    assert a.x_train.shape[1:] == (1, 8, 8) and len(a.y_train) + len(a.y_test) == 1797
    assert 0 <= a.x_train.min() and a.x_train.max() == 1.0                 # raw 0..16 scaled by 1/16
    np.testing.assert_array_equal(a.x_test, b.x_test)                      # seed only drives subsampling
    assert a.n_classes == 10 and set(np.unique(a.y_test)) == set(range(10))
    sub = load_real("digits", classes=(7, 1), subsample=40, seed=3)
    assert np.bincount(sub.y_train).tolist() == [20, 20] and sub.classes == (7, 1)


# ------------------------------------------------------------------------------ shared real data

@pytest.fixture(scope="module")
def shared_mnist01():
    if SHARED is None:
        pytest.skip("shared data folder (../shared/data) not present")
    return load_real("mnist", data_dir=SHARED, classes=(0, 1), normalize="unit")


def test_shared_mnist01_counts_and_order(shared_mnist01):
    ds = shared_mnist01
    # README: train 5923 + 6742, test 980 + 1135; first train labels 5 0 4 1 9 2 1 3 1 4
    assert np.bincount(ds.y_train).tolist() == [5923, 6742]
    assert np.bincount(ds.y_test).tolist() == [980, 1135]
    assert ds.y_train[:4].tolist() == [0, 1, 1, 1]
    assert ds.x_train.shape == (12665, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.settings["source"].endswith("mnist.npz")


def test_shared_cifar_airplane_bird():
    if SHARED is None or not (SHARED / "cifar10_airplane_bird.npz").is_file():
        pytest.skip("shared CIFAR-10 archive not present")
    ds = load_real("cifar10", data_dir=SHARED, classes=(0, 2), test_subsample=200)
    assert np.bincount(ds.y_train).tolist() == [5000, 5000] and np.bincount(ds.y_test).tolist() == [100, 100]
    assert ds.x_train.shape == (10000, 3, 32, 32)
    # README: the full set's per-channel means of x/255 are (0.4914, 0.4822, 0.4465); two classes differ,
    # but must stay in a plausible range and differ per channel (RGB order kept)
    mean = np.array(ds.settings["mean"])
    assert ((0.3 < mean) & (mean < 0.6)).all() and len(set(mean.round(3))) == 3


def test_fashion_mnist_from_the_debian_package():
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    ds = load_real("fashion_mnist", classes=(0, 9), subsample=100, test_subsample=50)
    assert ds.settings["source"] == str(FASHION_DIR)
    assert ds.x_train.shape == (100, 1, 28, 28) and np.bincount(ds.y_train).tolist() == [50, 50]
    assert ds.class_names == ("T-shirt/top", "Ankle boot")
