"""The dataset registry and its loaders (``trainables.data_sources``): bundled digits, IDX files,
CIFAR-10, checksummed downloads; files are written by the tests in the real formats."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainables.data_files import (
    CIFAR_FILES,
    IDX_FILES,
    cifar_bytes,
    idx_bytes,
    random_images,
    rows,
    serve,
    write_idx,
)
from trainables import data_formats
from trainables.data import (
    DatasetSplits,
    dataset_shape,
    load_dataset,
)


# ---------------------------------------------------------------------- embedded datasets
def test_mnist5k_splits_are_disjoint_and_seeded() -> None:
    a = load_dataset("mnist5k", binarize="none", seed=0)
    assert a.shape == (1, 28, 28) == dataset_shape("mnist5k")
    assert (len(a.train), len(a.val), len(a.test)) == (4000, 500, 500)
    for split in (a.train, a.val, a.test):
        assert split.dtype == torch.float32 and 0.0 <= split.min() and split.max() <= 1.0
    assert a.train.max() == 1.0 and 0.0 < a.train.mean() < 0.5  # real digits: dark background
    train, val, test = rows(a.train), rows(a.val), rows(a.test)
    assert len(train | val | test) == 5000  # disjoint and complete
    b = load_dataset("mnist5k", binarize="none", seed=0)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val) and torch.equal(a.test, b.test)
    c = load_dataset("mnist5k", binarize="none", seed=1)
    assert rows(c.test) != test


def test_digits_shape_and_sixteen_grey_levels() -> None:
    s = load_dataset("digits", binarize="none", val_fraction=0.2, test_fraction=0.3)
    assert s.shape == (1, 8, 8) == dataset_shape("digits")
    assert len(s.train) + len(s.val) + len(s.test) == 1797 and len(s.test) == round(0.3 * 1797)
    levels = torch.cat([s.train, s.val, s.test]).unique() * 16
    assert torch.allclose(levels, levels.round()) and levels.min() == 0 and levels.max() == 16


def test_max_train_keeps_the_first_shuffled_examples() -> None:
    full = load_dataset("digits", binarize="none", seed=3)
    capped = load_dataset("digits", binarize="none", seed=3, max_train=50)
    assert torch.equal(capped.train, full.train[:50]) and torch.equal(capped.val, full.val)


# --------------------------------------------------------------------------- IDX datasets
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("name", sorted(IDX_FILES))
def test_idx_datasets_round_trip_pixels(tmp_path: Path, name: str, gz: bool) -> None:
    train, test = random_images(0, 20), random_images(1, 7)
    for filename, images in zip(IDX_FILES[name], (train, test)):
        write_idx(tmp_path / name / (filename if gz else filename.removesuffix(".gz")), images)
    s = load_dataset(name, root=tmp_path, binarize="none", val_fraction=0.25, download=False)
    assert s.shape == (1, 28, 28) == dataset_shape(name)
    assert (len(s.train), len(s.val)) == (15, 5)
    # The official test split is kept whole and in order; val is carved from train.
    assert torch.equal(s.test, torch.from_numpy(test).float()[:, None] / 255)
    expected_train = rows(torch.from_numpy(train).float()[:, None] / 255)
    assert rows(s.train) | rows(s.val) == expected_train and not rows(s.train) & rows(s.val)


def test_root_defaults_to_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for filename, images in zip(IDX_FILES["mnist"], (random_images(0, 10), random_images(1, 3))):
        write_idx(tmp_path / "mnist" / filename, images)
    monkeypatch.setenv("VAESEARCH_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("mnist", download=False).test) == 3


def test_idx_with_wrong_image_size_is_rejected(tmp_path: Path) -> None:
    for filename in IDX_FILES["mnist"]:
        write_idx(tmp_path / "mnist" / filename, random_images(0, 10, (16, 16)))
    with pytest.raises(ValueError, match=r"\(1, 28, 28\)"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_corrupt_idx_file_is_a_clear_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "kmnist" / "t10k-images-idx3-ubyte.gz", random_images(1, 3))
    payload = idx_bytes(random_images(0, 10))
    (tmp_path / "kmnist" / "train-images-idx3-ubyte").write_bytes(payload[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("kmnist", root=tmp_path, download=False)


def test_missing_files_error_names_files_directory_and_urls(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("qmnist", root=tmp_path, download=False)
    msg = str(err.value)
    for filename in IDX_FILES["qmnist"]:
        assert filename in msg and filename.removesuffix(".gz") in msg
        assert f"https://raw.githubusercontent.com/facebookresearch/qmnist/master/{filename}" in msg
    assert str(tmp_path / "qmnist") in msg and "download=False" in msg


# ------------------------------------------------------------------------- faked download
def _mnist_server(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, bytes], list[str]]:
    files = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(random_images(0, 10)), mtime=0),
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(random_images(1, 4)), mtime=0),
    }
    source = data_formats.IDX_SOURCES["mnist"]
    # Only the last mirror answers, so the fallback over mirrors is exercised too.
    calls = serve(monkeypatch, {r.urls[-1]: files[r.name] for r in (source.train, source.test)})
    return files, calls


def test_download_with_wrong_checksum_raises_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mnist_server(monkeypatch)  # served bytes are not the real MNIST: the real MD5s cannot match
    with pytest.raises(data_formats.ChecksumError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", root=tmp_path, download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_with_matching_checksum_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, calls = _mnist_server(monkeypatch)
    source = data_formats.IDX_SOURCES["mnist"]
    patched = data_formats.IdxSource(
        *(
            data_formats.RemoteFile(r.name, hashlib.md5(files[r.name]).hexdigest(), r.urls)
            for r in (source.train, source.test)
        )
    )
    monkeypatch.setitem(data_formats.IDX_SOURCES, "mnist", patched)
    s = load_dataset("mnist", root=tmp_path, binarize="none", download=True)
    assert len(s.test) == 4 and len(s.train) + len(s.val) == 10
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)
    assert len(calls) == 2 * len(source.train.urls)  # every mirror tried in order for each file
    calls.clear()
    load_dataset("mnist", root=tmp_path, download=True)
    assert calls == []  # present files are not fetched again


def test_download_offline_raises_file_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, {})
    with pytest.raises(FileNotFoundError, match="download failed"):
        load_dataset("fashion_mnist", root=tmp_path, download=True)


# ------------------------------------------------------------------------------- CIFAR-10
def _cifar_payloads() -> dict[str, tuple[np.ndarray, bytes]]:
    out = {}
    for i, filename in enumerate(CIFAR_FILES):
        images = random_images(10 + i, 2, (3, 32, 32))
        out[filename] = (images, cifar_bytes(images, np.array([i, 9 - i])))
    return out


def _check_cifar(s: DatasetSplits, payloads: dict[str, tuple[np.ndarray, bytes]]) -> None:
    assert s.shape == (3, 32, 32) == dataset_shape("cifar10")
    assert torch.equal(s.test, torch.from_numpy(payloads["test_batch.bin"][0]).float() / 255)  # channel order kept
    train = np.concatenate([payloads[f][0] for f in CIFAR_FILES[:5]])
    assert rows(s.train) | rows(s.val) == rows(torch.from_numpy(train).float() / 255)


def test_cifar10_from_extracted_folder(tmp_path: Path) -> None:
    payloads = _cifar_payloads()
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for filename, (_, raw) in payloads.items():
        (folder / filename).write_bytes(raw)
    s = load_dataset("cifar10", root=tmp_path, binarize="none", val_fraction=0.2, download=False)
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 2)
    _check_cifar(s, payloads)


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar10_from_tar_gz(tmp_path: Path) -> None:
    payloads = _cifar_payloads()
    _write_tar(
        tmp_path / "cifar10" / "cifar-10-binary.tar.gz",
        {f"cifar-10-batches-bin/{name}": raw for name, (_, raw) in payloads.items()},
    )
    _check_cifar(load_dataset("cifar10", root=tmp_path, binarize="none", download=False), payloads)
    assert (tmp_path / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()


def test_cifar10_tar_with_parent_path_member_is_rejected(tmp_path: Path) -> None:
    members = {f"cifar-10-batches-bin/{name}": raw for name, (_, raw) in _cifar_payloads().items()}
    _write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", {**members, "../evil": b"owned"})
    with pytest.raises(ValueError, match=r"\.\./evil"):
        load_dataset("cifar10", root=tmp_path, download=False)
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "cifar10" / "cifar-10-batches-bin").exists()


def test_cifar10_missing_lists_archive_folder_and_url(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert "cifar-10-binary.tar.gz" in msg and str(tmp_path / "cifar10") in msg
    assert all(f"cifar-10-batches-bin/{name}" in msg for name in CIFAR_FILES)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in msg


# --------------------------------------------------------------------------- binarisation
def test_mnist5k_is_cached_under_the_data_root(tmp_path) -> None:
    """Every Ray actor (and every resumed trial) loads the data afresh: the parsed digits are kept
    as a uint8 .npy under the data root and read back from there."""
    import numpy as np

    first = load_dataset("mnist5k", root=tmp_path, binarize="none", seed=0)
    cached = tmp_path / "mnist5k" / "mnist5k-uint8.npy"
    assert cached.is_file()
    images = np.load(cached)
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    images[:] = 255 - images  # a changed cache must be what the next load returns
    np.save(cached, images)
    second = load_dataset("mnist5k", root=tmp_path, binarize="none", seed=0)
    assert torch.allclose(second.train, 1.0 - first.train, atol=1e-6)
    np.save(cached, images[:10])  # a wrong-shaped cache is ignored
    third = load_dataset("mnist5k", root=tmp_path, binarize="none", seed=0)
    assert torch.equal(third.train, first.train)
