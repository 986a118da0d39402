"""The researcher's own images (``trainables/user_data.py`` through ``trainables.data``): .npz/.npy
arrays, a folder of PNG/JPEG files, a callable; each bad dataset refused with what was expected."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.plugin_files import forget, write_module
from trainables.data import UserSource, check_data_options, dataset_shape, load_dataset
from trainables.data_formats import DataFormatError


def images(n: int = 40, shape: tuple[int, ...] = (1, 8, 8), dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        return rng.random((n, *shape)).astype(dtype)
    return rng.integers(0, 256, (n, *shape)).astype(dtype)


def load(name: str, path: Path | str, **options: object) -> object:
    user = UserSource(path=str(path), **{k: options.pop(k) for k in ("kwargs", "color", "search_path") if k in options})
    return load_dataset(name, binarize="none", user=user, **options)


def test_npz_with_provided_splits_keeps_them(tmp_path: Path) -> None:
    train, val, test = images(30), images(5), images(7)
    np.savez(tmp_path / "d.npz", train=train, val=val, test=test)
    splits = load("arrays", tmp_path / "d.npz")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 5, 7)
    assert torch.allclose(splits.val, torch.from_numpy(val.astype(np.float32) / 255))    # uint8 -> [0, 1]


def test_npy_of_grey_floats_is_split_by_fractions(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", images(50, (8, 8), np.float32))       # (N, H, W) floats in [0, 1]
    splits = load("arrays", tmp_path / "d.npy", val_fraction=0.2, test_fraction=0.2)
    assert splits.shape == (1, 8, 8) and (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 10)
    assert check_data_options("arrays", val_fraction=0.2, test_fraction=0.2,
                              user=UserSource(path=str(tmp_path / "d.npy"))) == 30


def test_non_square_images_need_a_resize(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", images(20, (3, 8, 12)))
    with pytest.raises(DataFormatError, match=r"images of 8x12 pixels; .*set data.resize"):
        dataset_shape("arrays", user=UserSource(path=str(tmp_path / "d.npy")))
    assert load("arrays", tmp_path / "d.npy", resize=16).shape == (3, 16, 16)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": images(20, (1, 8, 8), np.int64)}, r"dtype int64 is not supported; store uint8 \(0..255\) or floats in \[0, 1\]"),
    ({"x": images(20, dtype=np.float32) * 255}, r"float values in \[0.*, 25.*\]; the likelihoods need \[0, 1\]"),
    ({"x": np.full((20, 1, 8, 8), np.nan, np.float32)}, r"holds 1280 NaN or infinite value\(s\)"),
    ({"x": images(20, (8, 8, 3))}, r"looks channel-last \(N, H, W, C\)"),
    ({"x": images(20, (8,))}, r"expected images \(N, H, W\) or \(N, C, H, W\), got shape \(20, 8\)"),
    ({"x": images(0)}, "holds no images"),
    ({"x": images(4)}, r"only 4 image\(s\); at least 10"),
    ({"train": images(20), "test": images(5, (1, 16, 16))}, r"differ in shape \(C, H, W\): .*'train': \(1, 8, 8\).*'test': "
                                                            r"\(1, 16, 16\)"),
    ({"train": images(20), "val": images(0)}, r"\(val\): holds no images"),
    ({"a": images(20), "b": images(20)}, r"an .npz holds one array of images, or arrays named train .*got keys \['a', 'b'\]"),
])
def test_bad_arrays_are_refused(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataFormatError, match=message):
        check_data_options("arrays", user=UserSource(path=str(tmp_path / "d.npz")))


def test_splits_that_leave_no_validation_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", images(12))
    with pytest.raises(ValueError, match=r"val_fraction=0.01 leaves no validation examples out of 12"):
        check_data_options("arrays", val_fraction=0.01, user=UserSource(path=str(tmp_path / "d.npy")))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"does not exist \(a relative path is relative to the config file\)"):
        check_data_options("arrays", user=UserSource(path=str(tmp_path / "nope.npz")))
    (tmp_path / "d.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match=r"cannot be read as .npz"):
        check_data_options("arrays", user=UserSource(path=str(tmp_path / "d.npz")))
    np.save(tmp_path / "o.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"cannot be read as .npy"):            # no pickles are loaded
        check_data_options("arrays", user=UserSource(path=str(tmp_path / "o.npy")))


def _png(path: Path, size: tuple[int, int], mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = size[::-1] + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)


def test_image_folder_grey_and_rgb_resized(tmp_path: Path) -> None:
    for i in range(12):   # mixed sizes, formats and modes: all converted and resized
        _png(tmp_path / "imgs" / f"sub{i % 2}" / f"{i}.{'png' if i % 3 else 'jpg'}", (10 + i, 12), "RGB" if i % 2 else "L")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    grey = load("image_folder", tmp_path / "imgs", resize=8, val_fraction=0.25, test_fraction=0.25)
    assert grey.shape == (1, 8, 8) and len(grey.train) + len(grey.val) + len(grey.test) == 12
    rgb = load("image_folder", tmp_path / "imgs", resize=16, color="rgb", val_fraction=0.25, test_fraction=0.25)
    assert rgb.shape == (3, 16, 16) and 0.0 <= float(rgb.train.min()) and float(rgb.train.max()) <= 1.0


def test_image_folder_splits_and_errors(tmp_path: Path) -> None:
    for split, n in (("train", 10), ("val", 3), ("test", 3)):
        for i in range(n):
            _png(tmp_path / "s" / split / f"{i}.png", (8, 8))
    splits = load("image_folder", tmp_path / "s", resize=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 3, 3)

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no PNG or JPEG files under"):
        load("image_folder", tmp_path / "empty", resize=8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("not an image")
    with pytest.raises(DataFormatError, match=r"cannot read image .*x.png"):
        load("image_folder", tmp_path / "bad", resize=8)


def test_a_callable_by_import_path(tmp_path: Path) -> None:
    module = write_module(tmp_path, """
        import torch

        def faces(n=20, size=8):
            return torch.rand(n, 1, size, size)

        def splits():
            return {"train": torch.rand(20, 8, 8), "test": torch.rand(5, 8, 8)}

        def broken():
            raise OSError("the share is not mounted")

        def wrong():
            return {"training": torch.rand(20, 8, 8)}
    """, stem="data")
    try:
        user = {"search_path": str(tmp_path)}
        assert load("callable", f"{module}:faces", kwargs={"n": 30}, **user).train.shape[0] == 24
        assert len(load("callable", f"{module}:splits", **user).test) == 5
        with pytest.raises(DataFormatError, match=r"dataset callable .*:broken' raised OSError: the share is not mounted"):
            load("callable", f"{module}:broken", **user)
        with pytest.raises(DataFormatError, match=r"returned a dict with keys \['training'\]; expected train"):
            load("callable", f"{module}:wrong", **user)
        with pytest.raises(ValueError, match=r"dataset plug-in 'nothere' .*has no 'nothere'"):
            load("callable", f"{module}:nothere", **user)
    finally:
        forget(tmp_path)
