"""Data for nnboundary: the paper's simulated 2-D sets and readers for real image data.

Simulated (tabular) data come as :class:`Dataset` (``X`` (N, d) float64, ``y`` (N,) int64);
real image data as :class:`ImageDataset` (``x_train`` (N, C, H, W) float32, ``y_train`` (N,)
int64, and the test arrays). Nothing here downloads anything.

>>> from nnboundary.data import make_simulated, train_test_split
>>> train, test = train_test_split(make_simulated("moons", n_samples=200), test_fraction=0.1, seed=0)
>>> train.X.shape, test.X.shape
((180, 2), (20, 2))
"""

from ._dataset import Dataset
from ._errors import DataFormatError, DatasetNotFoundError
from ._readers import read_cifar_batch, read_idx, read_npz
from ._split import train_test_split
from .real import ENV_VAR, REAL_DATASETS, ImageDataset, data_search_dirs, default_data_dir, load_real
from .simulated import (
    SIMULATED,
    make_difficult_sectors,
    make_disc,
    make_iris_setosa,
    make_moons,
    make_plate,
    make_sectors_not_separable,
    make_simulated,
    make_three_blobs,
    make_two_blobs,
)

__all__ = [
    "ENV_VAR",
    "REAL_DATASETS",
    "SIMULATED",
    "DataFormatError",
    "Dataset",
    "DatasetNotFoundError",
    "ImageDataset",
    "data_search_dirs",
    "default_data_dir",
    "load_real",
    "make_difficult_sectors",
    "make_disc",
    "make_iris_setosa",
    "make_moons",
    "make_plate",
    "make_sectors_not_separable",
    "make_simulated",
    "make_three_blobs",
    "make_two_blobs",
    "read_cifar_batch",
    "read_idx",
    "read_npz",
    "train_test_split",
]
