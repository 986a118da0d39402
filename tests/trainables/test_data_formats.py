"""IDX / CIFAR-10 binary readers, checksummed downloads and safe tar extraction.

Files are written by the tests in the real formats; the network is never touched
(``data_formats.open_url`` is replaced).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.trainables.data_files import cifar_bytes, idx_bytes, serve, write_idx
from trainables import data_formats
from trainables.data_formats import ChecksumError, DataFormatError, RemoteFile


# ------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("filename", ["imgs-idx3-ubyte", "imgs-idx3-ubyte.gz"])
def test_read_idx_round_trips_raw_and_gzip(tmp_path: Path, filename: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    out = data_formats.read_idx_images(write_idx(tmp_path / filename, images))
    assert out.shape == (5, 1, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], images)


def test_read_idx_decodes_big_endian_int32(tmp_path: Path) -> None:
    # Label-style IDX of another dtype: proves the dims and values are read big-endian.
    values = np.array([1, 256, 70000], dtype=">i4")
    path = tmp_path / "x-idx1-int"
    path.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + values.tobytes())
    np.testing.assert_array_equal(data_formats.read_idx(path), [1, 256, 70000])


def test_read_idx_rejects_bad_magic(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 4, 4), np.uint8))
    path = tmp_path / "bad"
    path.write_bytes(b"\x01" + good[1:])
    with pytest.raises(DataFormatError, match="magic"):
        data_formats.read_idx(path)
    path.write_bytes(good[:2] + b"\x42" + good[3:])  # unknown dtype code
    with pytest.raises(ValueError, match="magic"):
        data_formats.read_idx(path)


@pytest.mark.parametrize("cut", [-1, 10, 3])
def test_read_idx_rejects_truncated_file(tmp_path: Path, cut: int) -> None:
    good = idx_bytes(np.zeros((2, 4, 4), np.uint8))
    path = tmp_path / "short"
    path.write_bytes(good[:cut])
    with pytest.raises(DataFormatError, match="truncated|only 3 bytes"):
        data_formats.read_idx(path)


def test_read_idx_rejects_trailing_bytes_and_broken_gzip(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "long").write_bytes(good + b"\x00")
    with pytest.raises(DataFormatError, match="header declares dims"):
        data_formats.read_idx(tmp_path / "long")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-12])
    with pytest.raises(DataFormatError, match="gzip"):
        data_formats.read_idx(tmp_path / "cut.gz")


def test_read_idx_images_rejects_non_image_idx(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + bytes([1, 2, 3]))
    with pytest.raises(DataFormatError, match=r"\(N, H, W\)"):
        data_formats.read_idx_images(path)


# ---------------------------------------------------------------------------------- CIFAR
def test_read_cifar10_batch_keeps_channel_major_order(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(cifar_bytes(images, np.array([0, 9, 4])))
    out = data_formats.read_cifar10_batch(path)
    np.testing.assert_array_equal(out, images)


def test_read_cifar10_batch_rejects_misaligned_file(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(cifar_bytes(np.zeros((2, 3, 32, 32), np.uint8), np.array([1, 2]))[:-1])
    with pytest.raises(DataFormatError, match="3073-byte record"):
        data_formats.read_cifar10_batch(path)
    path.write_bytes(cifar_bytes(np.zeros((1, 3, 32, 32), np.uint8), np.array([200])))
    with pytest.raises(DataFormatError, match="label"):
        data_formats.read_cifar10_batch(path)


def _tar_with(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if symlink is not None:
            link = tarfile.TarInfo("cifar-10-batches-bin/link")
            link.type, link.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(link)
    return path


@pytest.mark.parametrize(
    ("members", "symlink"),
    [({"cifar-10-batches-bin/ok.bin": b"1", "../evil": b"x"}, None), ({"/tmp/evil": b"x"}, None), ({}, "/etc/passwd")],
    ids=["dotdot", "absolute", "symlink"],
)
def test_safe_extract_tar_rejects_escaping_members(
    tmp_path: Path, members: dict[str, bytes], symlink: str | None
) -> None:
    archive = _tar_with(tmp_path / "a.tar.gz", members, symlink)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataFormatError, match="refusing to extract"):
        data_formats.safe_extract_tar(archive, dest)
    assert list(dest.iterdir()) == []  # all-or-nothing: not even the safe member was written
    assert not (tmp_path / "evil").exists()


# ------------------------------------------------------------------------------- download
def _remote(payload: bytes, md5: str | None = None, n_mirrors: int = 2) -> RemoteFile:
    urls = tuple(f"https://mirror{i}.invalid/f.gz" for i in range(n_mirrors))
    return RemoteFile(name="f.gz", md5=md5 or hashlib.md5(payload).hexdigest(), urls=urls)


def test_download_verifies_md5_and_writes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"some bytes" * 1000
    remote = _remote(payload)
    calls = serve(monkeypatch, {remote.urls[1]: payload})  # first mirror offline
    path = data_formats.download(remote, tmp_path)
    assert path == tmp_path / "f.gz" and path.read_bytes() == payload
    assert calls == list(remote.urls)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gz"]  # no temp file left behind


def test_download_checksum_mismatch_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = _remote(b"expected", md5=hashlib.md5(b"expected").hexdigest())
    serve(monkeypatch, {url: b"tampered" for url in remote.urls})
    with pytest.raises(ChecksumError, match="f.gz"):
        data_formats.download(remote, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_offline_returns_none_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, {})
    assert data_formats.download(_remote(b"x"), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_ensure_files_offline_reports_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, {})
    remote = _remote(b"x")
    with pytest.raises(FileNotFoundError, match="download failed") as err:
        data_formats.ensure_files("toy", tmp_path / "toy", [remote], download_missing=True)
    assert "f.gz or f" in str(err.value) and remote.urls[0] in str(err.value)


def test_safe_extract_tar_rejects_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar at all" * 40)[:50])
    with pytest.raises(DataFormatError, match="not a readable tar archive"):
        data_formats.safe_extract_tar(archive, tmp_path)
