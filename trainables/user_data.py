"""The researcher's own images: ``arrays`` (.npz/.npy), ``image_folder`` (PNG/JPEG) and ``callable``.

Each reader returns :class:`~trainables.data_sources.RawImages` (N, C, H, W) with the splits the
user provided (an .npz with ``train``/``val``/``test`` arrays, an image folder with ``train/``,
``val/``, ``test/`` sub-folders, a callable returning a dict of them); ``trainables.data`` carves
the missing ones, scales to [0, 1], resizes and binarises as for every dataset. Every problem is a
:class:`~trainables.data_formats.DataFormatError` (a ``ValueError``) naming the file and saying
what was expected: ``vaesearch validate`` reads the data once and refuses it before Ray starts.

Values: uint8 (0..255) or bool, or floats in [0, 1] (a Bernoulli likelihood needs [0, 1], and so
does the Gaussian's sigmoid mean): floats outside [0, 1] are refused, not rescaled silently. The
data is read once per worker process (cached by path, size and modification time) and lives whole
on the training device as float32: N x C x H x W x 4 bytes (see ``MAX_DATA_BYTES``).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data_formats import DataFormatError
from trainables.data_sources import RawImages
from trainables.registry import Plugin

USER_DATASETS = ("arrays", "callable", "image_folder")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COLORS = {"grey": "L", "rgb": "RGB"}
MIN_IMAGES = 10   # train, validation and test need a few each


def read_user_data(name: str, path: str | None, kwargs: dict[str, Any] | None = None, color: str = "grey",
                   resize: int | None = None, search_path: str | None = None) -> RawImages:
    """The images of user dataset ``name``, checked; cached in this process. ``search_path``: where
    a callable's module was found by the driver (``trainables.registry.Plugin.search_path``)."""
    if name not in USER_DATASETS:
        raise ValueError(f"unknown user dataset {name!r}; valid names: {list(USER_DATASETS)}")
    if not path:
        form = "package.module:function" if name == "callable" else "a file or directory"
        raise DataFormatError(f"data.name {name!r} needs data.path ({form})")
    if color not in COLORS:
        raise DataFormatError(f"data.color must be one of {list(COLORS)}, got {color!r}")
    if name != "callable":
        path = str(resolve(path))
    stamp = _stamp(path) if name != "callable" else ""
    return _cached(name, path, json.dumps(kwargs or {}, sort_keys=True), color, resize, stamp, search_path)


def resolve(path: str) -> Path:
    """A data path as this process should read it: a relative one is relative to the directory the
    process started in (Tune moves a trial into its own directory and records the original in
    TUNE_ORIG_WORKING_DIR); a job on a cluster starts in its working_dir, where submit put the file."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(os.environ.get("TUNE_ORIG_WORKING_DIR") or os.getcwd()) / p


def _stamp(path: str) -> str:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataFormatError(f"data.path {path!r} does not exist (a relative path is relative to the config file)")
    info = p.stat()
    return f"{info.st_size}:{info.st_mtime_ns}"


@functools.lru_cache(maxsize=4)
def _cached(name: str, path: str, kwargs: str, color: str, resize: int | None, stamp: str,
            search_path: str | None) -> RawImages:
    if name == "arrays":
        splits = read_arrays(Path(path).expanduser())
    elif name == "image_folder":
        splits = read_image_folder(Path(path).expanduser(), color, resize)
    else:
        splits = call_loader(path, json.loads(kwargs), search_path)
    return to_raw(splits, where=f"data.path {path!r}")


def read_arrays(path: Path) -> dict[str, Any]:
    """An .npy (one array of images) or an .npz (one array, or arrays named train/val/test)."""
    if path.suffix not in (".npy", ".npz"):
        raise DataFormatError(f"data.path {str(path)!r}: the arrays dataset reads .npy or .npz files, got {path.suffix!r}")
    try:
        if path.suffix == ".npy":
            return {"train": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if len(keys) == 1:
                return {"train": archive[keys[0]]}
            if "train" in keys and set(keys) <= set(SPLITS):
                return {k: archive[k] for k in keys}
    except (OSError, ValueError, EOFError) as exc:   # not an npy/npz, or object arrays (pickles)
        raise DataFormatError(f"data.path {str(path)!r} cannot be read as {path.suffix}: {exc}") from None
    raise DataFormatError(f"data.path {str(path)!r}: an .npz holds one array of images, or arrays named "
                          f"train (and val, test); got keys {keys}")


def read_image_folder(path: Path, color: str, size: int | None) -> dict[str, Any]:
    """PNG/JPEG files under ``path`` (or under its train/, val/, test/ folders), converted to
    ``color`` and resized to ``size`` x ``size`` (Pillow, bilinear)."""
    if not path.is_dir():
        raise DataFormatError(f"data.path {str(path)!r}: the image_folder dataset reads a directory")
    if size is None:
        raise DataFormatError("the image_folder dataset needs data.resize: the size every image is resized to")
    folders = {s: path / s for s in SPLITS if (path / s).is_dir()} if (path / "train").is_dir() else {"train": path}
    return {split: _read_images(folder, color, size) for split, folder in folders.items()}


def _read_images(folder: Path, color: str, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # lazy: only image folders need Pillow

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataFormatError(f"no PNG or JPEG files under {str(folder)!r}")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert(COLORS[color]).resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(image, dtype=np.uint8))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataFormatError(f"cannot read image {str(file)!r}: {exc}") from None
    stacked = np.stack(images)               # (N, S, S) or (N, S, S, 3)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def call_loader(path: str, kwargs: dict[str, Any], search_path: str | None = None) -> dict[str, Any]:
    """``package.module:function(**kwargs)``: an array/tensor of images, or a dict of splits."""
    try:
        plugin = Plugin(path=path, kwargs=kwargs, search_path=search_path)
    except ValueError:
        raise DataFormatError(f"data.path {path!r}: the callable dataset names a function as "
                              "'package.module:function'") from None
    loader = plugin.load("dataset")
    try:
        out = loader(**kwargs)
    except Exception as exc:  # noqa: BLE001 - user code
        raise DataFormatError(f"dataset callable {path!r} raised {type(exc).__name__}: {exc}") from None
    if isinstance(out, dict):
        unknown = sorted(set(out) - set(SPLITS))
        if unknown or "train" not in out:
            raise DataFormatError(f"dataset callable {path!r} returned a dict with keys {sorted(out)}; expected "
                                  "train (and val, test)")
        return dict(out)
    return {"train": out}


def _as_images(value: Any, where: str) -> tuple[np.ndarray, float]:
    """(N, C, H, W) uint8 or float32 in [0, 1], and its maximum value (255 or 1)."""
    if hasattr(value, "detach"):            # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise DataFormatError(f"{where}: expected an array of images, got a {type(value).__name__}")
    if value.ndim == 3:
        value = value[:, None]                  # (N, H, W) -> (N, 1, H, W)
    if value.ndim != 4:
        raise DataFormatError(f"{where}: expected images (N, H, W) or (N, C, H, W), got shape {value.shape}")
    if value.shape[1] not in (1, 3) and value.shape[3] in (1, 3):
        raise DataFormatError(f"{where}: shape {value.shape} looks channel-last (N, H, W, C); store (N, C, H, W) "
                              "(numpy: a.transpose(0, 3, 1, 2))")
    if len(value) == 0:
        raise DataFormatError(f"{where}: holds no images (shape {value.shape})")
    if value.dtype == np.uint8:
        return value, 255.0
    if value.dtype == np.bool_:
        return value.astype(np.uint8), 1.0
    if not np.issubdtype(value.dtype, np.floating):
        raise DataFormatError(f"{where}: dtype {value.dtype} is not supported; store uint8 (0..255) or floats in [0, 1]")
    value = value.astype(np.float32)
    if not np.isfinite(value).all():
        raise DataFormatError(f"{where}: holds {int((~np.isfinite(value)).sum())} NaN or infinite value(s)")
    lo, hi = float(value.min()), float(value.max())
    if lo < 0.0 or hi > 1.0:
        raise DataFormatError(f"{where}: float values in [{lo:g}, {hi:g}]; the likelihoods need [0, 1] (Bernoulli "
                              "probabilities): divide by the maximum (e.g. 255) or store uint8 0..255")
    return value, 1.0


def to_raw(splits: dict[str, Any], where: str) -> RawImages:
    """Checked splits -> RawImages: one (C, H, W) across splits, one scale, enough images."""
    arrays: dict[str, np.ndarray] = {}
    scales: set[float] = set()
    for split, value in splits.items():
        arrays[split], scale = _as_images(value, f"{where} ({split})" if len(splits) > 1 else where)
        scales.add(scale)
    shapes = {split: tuple(a.shape[1:]) for split, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise DataFormatError(f"{where}: the splits' images differ in shape (C, H, W): {shapes}")
    if len(scales) > 1:   # mixed uint8 and float splits: bring all to [0, 1] floats
        arrays = {k: (a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a) for k, a in arrays.items()}
    total = sum(len(a) for a in arrays.values())
    if total < MIN_IMAGES:
        raise DataFormatError(f"{where}: only {total} image(s); at least {MIN_IMAGES} are needed for training, "
                              "validation and test")
    for split, images in arrays.items():
        images.setflags(write=False)
    return RawImages(train=arrays["train"], test=arrays.get("test"), val=arrays.get("val"),
                     max_value=max(scales) if len(scales) == 1 else 1.0)
