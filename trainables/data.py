"""Dataset registry: a name -> float32 image tensors in [0, 1], split, resized and binarised.

The whole dataset lives in one tensor on the training device and minibatches are
``data[idx]`` (``minibatch_indices``): no DataLoader and no per-example Python on the hot path.

Binarisation follows the VAE literature: *dynamic* binarisation resamples a Bernoulli image
from the grey levels for every training batch (Burda et al. 2015, IWAE), while validation and
test are binarised once with a fixed seed so scores are comparable across trials; *static*
binarisation samples every split once (fixed binarisation, Salakhutdinov & Murray 2008,
about 2 nats worse). The 32x32 resize is the multi-armed-bandit VAE protocol (reference 003).
The datasets themselves (where their images come from) are registered in
``data_sources.py``; file formats and downloads live in ``data_formats.py``; the researcher's own
images (``arrays``, ``image_folder``, ``callable``: a :class:`UserSource` says where) in
``user_data.py``. The whole dataset must fit on the device: :data:`MAX_DATA_BYTES`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainables.data_formats import DataFormatError
from trainables.data_sources import DATASETS, RawImages
from trainables.registry import Registry
from trainables.user_data import USER_DATASETS, read_user_data

BINARIZE_MODES = ("dynamic", "static", "none")
# Which splits are Bernoulli-sampled once at load time, per mode. Dynamic leaves train in grey
# levels: the training loop samples each batch with ``binarize_batch``.
_BINARIZED_AT_LOAD: dict[str, tuple[str, ...]] = {
    "dynamic": ("val", "test"),
    "static": ("train", "val", "test"),
    "none": (),
}
_MIN_RESIZE = 4
_RESIZE_CHUNK = 2048  # images per interpolate call: bounds the temporary for 60k-image datasets
_DEFAULT_ROOT = "~/.cache/vaesearch/data"
#: The float32 train + val + test tensors of one trial live whole on its device (no streaming): a
#: user dataset larger than this is refused at validate. Set VAESEARCH_MAX_DATA_GB to change it.
MAX_DATA_BYTES = int(float(os.environ.get("VAESEARCH_MAX_DATA_GB", "8")) * 2**30)


@dataclass(frozen=True)
class UserSource:
    """Where the researcher's own images are (``data.name`` arrays | image_folder | callable)."""

    path: str | None = None                 # the .npz/.npy file, the folder, or package.module:function
    kwargs: dict | None = None              # callable: its keyword arguments
    color: str = "grey"                     # image_folder: grey | rgb
    search_path: str | None = None          # callable: the directory its module was found in


#: Every dataset name a config may give: the registered ones and the user's own kinds.
DATASET_NAMES: Registry[str] = Registry("dataset", {n: n for n in sorted([*DATASETS, *USER_DATASETS])})


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no truth value to compare with
class DatasetSplits:
    """Train / val / test images, each (N, C, H, W) float32 in [0, 1] on one device."""

    name: str
    train: torch.Tensor  # (N, C, H, W)
    val: torch.Tensor  # (N_val, C, H, W)
    test: torch.Tensor  # (N_test, C, H, W)
    binarize: str  # one of BINARIZE_MODES

    def __post_init__(self) -> None:
        _check_mode(self.binarize)
        shapes = {tuple(t.shape[1:]) for t in (self.train, self.val, self.test)}
        if self.train.ndim != 4 or len(shapes) != 1:
            raise ValueError(
                f"splits must be (N, C, H, W) with equal (C, H, W), got train {tuple(self.train.shape)}, "
                f"val {tuple(self.val.shape)}, test {tuple(self.test.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.shape[1:]
        return (int(c), int(h), int(w))

    def to(self, device: torch.device | str) -> DatasetSplits:
        """The same splits on ``device``; returns ``self`` when nothing had to move."""
        train, val, test = (t.to(device) for t in (self.train, self.val, self.test))
        if train is self.train and val is self.val and test is self.test:
            return self
        return replace(self, train=train, val=val, test=test)

    def __repr__(self) -> str:
        return (
            f"DatasetSplits(name={self.name!r}, train={tuple(self.train.shape)}, val={tuple(self.val.shape)}, "
            f"test={tuple(self.test.shape)}, binarize={self.binarize!r}, device={self.train.device})"
        )


@dataclass(frozen=True)
class _SplitIndices:
    train: np.ndarray
    val: np.ndarray | None   # None: use the provided validation split
    test: np.ndarray | None  # None: use the official test split


# --------------------------------------------------------------------------- validation
def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_mode(mode: str) -> None:
    if mode not in BINARIZE_MODES:
        raise ValueError(f"unknown binarize mode, got {mode=}; valid modes: {list(BINARIZE_MODES)}")


def _check_resize(resize: int | None) -> None:
    if resize is not None and not (_is_int(resize) and resize >= _MIN_RESIZE):
        raise ValueError(f"resize must be None or an int >= {_MIN_RESIZE}, got {resize=}")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ValueError(f"{arg} must be a number in the open interval (0, 1), got {arg}={value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 to leave training data, got {val_fraction=}, {test_fraction=}"
        )


def _count(n: int, fraction: float, what: str, arg: str) -> int:
    k = round(fraction * n)
    if k < 1:
        raise ValueError(f"{arg}={fraction} leaves no {what} examples out of {n}; use a larger {arg}")
    return k


# ---------------------------------------------------------------------------- pipeline
def _split_counts(n: int, has_test: bool, val_fraction: float, test_fraction: float,
                  has_val: bool = False) -> tuple[int, int]:
    """(test, validation) examples carved from the ``n`` stored training images."""
    n_test = 0 if has_test else _count(n, test_fraction, "test", "test_fraction")
    n_val = 0 if has_val else _count(n, val_fraction, "validation", "val_fraction")
    if n_test + n_val >= n:
        raise ValueError(f"{val_fraction=} and {test_fraction=} leave no training examples out of {n}")
    return n_test, n_val


def _split_indices(n: int, has_test: bool, val_fraction: float, test_fraction: float, seed: int,
                   has_val: bool = False) -> _SplitIndices:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_test, n_val = _split_counts(n, has_test, val_fraction, test_fraction, has_val)
    return _SplitIndices(
        train=perm[n_test + n_val :],
        val=None if has_val else perm[n_test : n_test + n_val],
        test=None if has_test else perm[:n_test],
    )


def _to_unit(images: np.ndarray, max_value: float) -> torch.Tensor:
    # astype copies, so the tensor never aliases a read-only (cached or mmapped) buffer.
    return torch.from_numpy(images.astype(np.float32)).div_(max_value)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear with antialiasing, clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = x.new_empty((x.shape[0], x.shape[1], size, size))
    for start in range(0, x.shape[0], _RESIZE_CHUNK):
        chunk = x[start : start + _RESIZE_CHUNK]
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk.shape[0]] = resized.clamp_(0.0, 1.0)  # bilinear can overshoot slightly
    return out


def _data_root(root: str | Path | None) -> Path:
    if root is None:  # read at call time so a Ray worker's environment decides
        root = os.environ.get("VAESEARCH_DATA_ROOT", _DEFAULT_ROOT)
    return Path(root).expanduser()


# -------------------------------------------------------------------------------- public
def available_datasets() -> list[str]:
    """Names accepted by ``load_dataset``, sorted."""
    return DATASET_NAMES.names()


def _user_raw(name: str, resize: int | None, user: UserSource | None) -> RawImages:
    user = user or UserSource()
    return read_user_data(name, user.path, user.kwargs, user.color, resize, user.search_path)


def dataset_shape(name: str, resize: int | None = None, user: UserSource | None = None) -> tuple[int, int, int]:
    """(C, H, W) of one image of ``name`` after ``resize``, without loading any data (a user
    dataset is read, once per process, and checked: ``trainables.user_data``)."""
    DATASET_NAMES.check(name)
    _check_resize(resize)
    if name not in USER_DATASETS:
        c, h, w = DATASETS.get(name).shape
        return (c, h, w) if resize is None else (c, int(resize), int(resize))
    c, h, w = (int(s) for s in _user_raw(name, resize, user).train.shape[1:])
    if resize is None and (h != w or h < 8):
        raise DataFormatError(f"data.path {user.path if user else None!r}: images of {h}x{w} pixels; the models need "
                              "square images of at least 8x8: set data.resize (e.g. 32)")
    return (c, h, w) if resize is None else (c, int(resize), int(resize))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Minibatches in one pass over ``n`` examples (the last one may be smaller)."""
    return -(-n // batch_size)


def check_data_options(
    name: str, *, binarize: str = "dynamic", resize: int | None = None, val_fraction: float = 0.1,
    test_fraction: float = 0.1, max_train: int | None = None, user: UserSource | None = None,
) -> int | None:
    """Every rule ``load_dataset`` enforces before it reads a file; returns the number of training
    examples the split leaves when the dataset's size is known without loading (else None). A user
    dataset is read (once per process) and checked whole: values, shapes, splits, size."""
    DATASET_NAMES.check(name)
    _check_mode(binarize)
    _check_resize(resize)
    _check_fractions(val_fraction, test_fraction)
    if max_train is not None and not (_is_int(max_train) and max_train >= 1):
        raise ValueError(f"max_train must be None or an int >= 1, got {max_train=}")
    has_val = False
    if name in USER_DATASETS:
        raw = _user_raw(name, resize, user)
        c, h, w = dataset_shape(name, resize, user)
        n, has_test, has_val = len(raw.train), raw.test is not None, raw.val is not None
        total = sum(len(a) for a in (raw.train, raw.val, raw.test) if a is not None) * c * h * w * 4
        if total > MAX_DATA_BYTES:
            raise DataFormatError(f"data.path {user.path if user else None!r}: {total / 2**30:.1f} GiB as float32 on "
                                  f"the device, over the limit of {MAX_DATA_BYTES / 2**30:.1f} GiB (the whole dataset "
                                  "lives on the device): use data.resize, fewer images, or VAESEARCH_MAX_DATA_GB")
    elif DATASETS.get(name).stored is None:
        return None
    else:
        n, has_test = DATASETS.get(name).stored  # type: ignore[misc]
    n_test, n_val = _split_counts(n, has_test, val_fraction, test_fraction, has_val)
    n_train = n - n_test - n_val
    return n_train if max_train is None else min(n_train, int(max_train))


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    binarize: str = "dynamic",
    resize: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    max_train: int | None = None,
    user: UserSource | None = None,
) -> DatasetSplits:
    """Load ``name`` as float32 tensors in [0, 1] on the CPU (move them with ``.to(device)``).

    Datasets with an official test split (the IDX family, cifar10) keep it and carve ``val``
    from train with ``val_fraction`` (``test_fraction`` is then unused); the embedded ones
    (mnist5k, digits) carve test and val as fractions of the whole. All carving uses one
    permutation drawn from ``seed``. Files are read from ``<root>/<name>/``; a user dataset
    (arrays, image_folder, callable) from ``user`` and keeps the splits it provides.
    """
    check_data_options(name, binarize=binarize, resize=resize, val_fraction=val_fraction,
                       test_fraction=test_fraction, max_train=max_train, user=user)
    if not _is_int(seed):
        raise ValueError(f"seed must be an int, got {seed=}")

    if name in USER_DATASETS:
        raw = _user_raw(name, resize, user)   # checked and cached by check_data_options
    else:
        spec = DATASETS.get(name)
        raw = spec.load(_data_root(root) / name, download)
        for split in (raw.train, raw.test):
            if split is not None and tuple(split.shape[1:]) != spec.shape:
                raise DataFormatError(f"dataset {name!r}: expected images of shape {spec.shape}, got {split.shape[1:]}")

    idx = _split_indices(len(raw.train), raw.test is not None, val_fraction, test_fraction, int(seed), raw.val is not None)
    train_idx = idx.train if max_train is None else idx.train[:max_train]
    test_images = raw.test if idx.test is None else raw.train[idx.test]
    val_images = raw.val if idx.val is None else raw.train[idx.val]
    splits = {
        "train": _to_unit(raw.train[train_idx], raw.max_value),
        "val": _to_unit(val_images, raw.max_value),
        "test": _to_unit(test_images, raw.max_value),
    }
    if resize is not None:
        splits = {k: _resize(v, int(resize)) for k, v in splits.items()}
    # A generator of its own, seeded from ``seed``: the same val/test bits on every load.
    generator = torch.Generator().manual_seed(int(seed))
    for key in _BINARIZED_AT_LOAD[binarize]:
        splits[key] = torch.bernoulli(splits[key], generator=generator)
    return DatasetSplits(name=name, binarize=binarize, **splits)


def binarize_batch(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A training batch as the model should see it: a fresh Bernoulli sample for ``"dynamic"``,
    ``x`` itself (same object) for ``"static"`` (binarised at load) and ``"none"``.

    ``generator`` must live on ``x``'s device.
    """
    _check_mode(mode)
    if mode != "dynamic":
        return x
    return torch.bernoulli(x, generator=generator)


def minibatch_indices(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled minibatch indices over ``range(n)``, each a (batch_size,) tensor on
    ``device`` (the last one smaller unless ``drop_last``). Use as ``data[idx]``."""
    if not (_is_int(n) and n >= 0):
        raise ValueError(f"n must be an int >= 0, got {n=}")
    if not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size=}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU generator (the permutation is drawn on the CPU), got {generator.device=}"
        )
    # Validation above runs eagerly; the iteration itself is lazy.
    return _iterate_batches(int(n), int(batch_size), generator, device, drop_last)


def _iterate_batches(
    n: int, batch_size: int, generator: torch.Generator | None, device: torch.device | str, drop_last: bool
) -> Iterator[torch.Tensor]:
    # One permutation on the CPU (reproducible with a CPU generator), moved to the device once.
    perm = torch.randperm(n, generator=generator).to(device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield perm[start : start + batch_size]
