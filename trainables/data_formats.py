"""On-disk dataset formats and their download: IDX (LeCun et al., the MNIST family) and the
CIFAR-10 binary version (Krizhevsky 2009, ``cifar-10-binary.tar.gz``).

IDX: a 4-byte big-endian magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the row-major data (http://yann.lecun.com/exdb/mnist/).
CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes, channel-major 3x32x32
(https://www.cs.toronto.edu/~kriz/cifar.html).

File names, URLs and MD5 checksums are the ones torchvision uses (``torchvision/datasets/
mnist.py``), so a directory prepared for torchvision's raw files works here too.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

DOWNLOAD_TIMEOUT_S = 20.0
_CHUNK = 1 << 20


class DataFormatError(ValueError):
    """A data file exists but is not a valid file of the expected format."""


class ChecksumError(RuntimeError):
    """A downloaded file does not have the published MD5 checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name as published, MD5 of those bytes, and its mirrors in order."""

    name: str
    md5: str
    urls: tuple[str, ...]

    @property
    def accepted_names(self) -> tuple[str, ...]:
        # Users often gunzip the IDX files by hand; accept both spellings.
        if self.name.endswith(".gz"):
            return (self.name, self.name[: -len(".gz")])
        return (self.name,)


@dataclass(frozen=True)
class IdxSource:
    """The official image files of one IDX dataset (labels are not needed by a VAE)."""

    train: RemoteFile
    test: RemoteFile


def _mirrored(name: str, md5: str, mirrors: tuple[str, ...]) -> RemoteFile:
    return RemoteFile(name=name, md5=md5, urls=tuple(m + name for m in mirrors))


# yann.lecun.com often refuses downloads nowadays, so the S3 mirror is tried first.
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_KMNIST_MIRRORS = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
_QMNIST_MIRRORS = ("https://raw.githubusercontent.com/facebookresearch/qmnist/master/",)

# Looked up at call time (not captured at import) so a test can swap one entry.
IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        train=_mirrored("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST_MIRRORS),
        test=_mirrored("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST_MIRRORS),
    ),
    "fashion_mnist": IdxSource(
        train=_mirrored("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", _FASHION_MIRRORS),
        test=_mirrored("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", _FASHION_MIRRORS),
    ),
    "kmnist": IdxSource(
        train=_mirrored("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7", _KMNIST_MIRRORS),
        test=_mirrored("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7", _KMNIST_MIRRORS),
    ),
    "qmnist": IdxSource(
        train=_mirrored("qmnist-train-images-idx3-ubyte.gz", "ed72d4157d28c017586c42bc6afe6370", _QMNIST_MIRRORS),
        test=_mirrored("qmnist-test-images-idx3-ubyte.gz", "1394631089c404de565df7b7aeaf9412", _QMNIST_MIRRORS),
    ),
}

CIFAR10_ARCHIVE = RemoteFile(
    name="cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
)
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
_CIFAR10_RECORD = 1 + 3 * 32 * 32

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ------------------------------------------------------------------------------ readers
def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; a cut-off stream is EOFError
        raise DataFormatError(f"{path} is not a readable gzip file ({exc}); delete it and fetch it again") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed) into an array of its declared shape and dtype."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(f"{path} is not an IDX file: only {len(raw)} bytes, the magic alone is 4")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(
            f"{path} is not an IDX file: magic bytes {raw[:4].hex(' ')}, expected 00 00 <type code in "
            f"{sorted(hex(c) for c in _IDX_DTYPES)}> <ndim >= 1>"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path} is truncated: {len(raw)} bytes, the header of {ndim} dims needs {header}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(
            f"{path} has {len(raw)} bytes but its header declares dims {dims} of {dtype} "
            f"({expected} bytes): the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX uint8 image file (N, H, W) and return it as (N, 1, H, W) uint8."""
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(
            f"{path} is not an IDX image file: expected uint8 dims (N, H, W), got {images.dtype} {images.shape}"
        )
    return images[:, None]  # (N, 1, H, W)


def read_cifar10_batch(path: str | Path) -> np.ndarray:
    """Read one CIFAR-10 binary batch file; returns (N, 3, 32, 32) uint8 (labels are dropped)."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % _CIFAR10_RECORD != 0:
        raise DataFormatError(
            f"{path} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a positive multiple of "
            f"the {_CIFAR10_RECORD}-byte record (1 label byte + 3072 pixels)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR10_RECORD)
    # A label outside 0..9 means the records are misaligned (wrong file, or the python version).
    if int(records[:, 0].max()) > 9:
        raise DataFormatError(f"{path} is not a CIFAR-10 binary batch: label bytes above 9")
    return records[:, 1:].reshape(-1, 3, 32, 32)  # channel-major: (N, C, H, W)


# ---------------------------------------------------------------------------- downloads
def open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for reading. The one place that touches the network (tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed https/http URLs)


def download(remote: RemoteFile, directory: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path | None:
    """Fetch ``remote`` into ``directory``, trying each mirror; verify the MD5; write atomically.

    Returns the file's path, or None when no mirror could be reached (the caller then reports
    the missing file). Raises ChecksumError when bytes arrived but none matched the checksum:
    silently falling back to "file not found" would hide a corrupt mirror.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.name
    mismatches: list[str] = []
    for url in remote.urls:
        # A temp file in the same directory so os.replace is atomic: concurrent trials on one
        # node never see a half-written file under the real name.
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{remote.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            md5 = hashlib.md5()
            with os.fdopen(fd, "wb") as out, open_url(url, timeout) as response:
                while chunk := response.read(_CHUNK):
                    md5.update(chunk)
                    out.write(chunk)
            if md5.hexdigest() != remote.md5:
                mismatches.append(f"{url}: md5 {md5.hexdigest()}, expected {remote.md5}")
                continue
            os.replace(tmp, target)
            return target
        except (OSError, http.client.HTTPException):
            # URLError, HTTPError, timeouts, refused or cut connections: try the next mirror.
            continue
        finally:
            tmp.unlink(missing_ok=True)
    if mismatches:
        raise ChecksumError(f"downloaded {remote.name} but the checksum did not match: " + "; ".join(mismatches))
    return None


def missing_files_error(
    dataset: str, directory: Path, missing: list[str], urls: list[str], why: str
) -> FileNotFoundError:
    """The "which files to put where" error: every missing file, the directory, the URLs."""
    lines = [f"dataset {dataset!r}: {len(missing)} file(s) missing from {directory} ({why}):"]
    lines += [f"  - {name}" for name in missing]
    lines.append(f"Put them in {directory} (that is <root>/{dataset}, where <root> is the `root` argument,")
    lines.append("else $VAESEARCH_DATA_ROOT, else ~/.cache/vaesearch/data). They come from:")
    lines += [f"  {url}" for url in urls]
    return FileNotFoundError("\n".join(lines))


def _find(directory: Path, remote: RemoteFile) -> Path | None:
    for name in reversed(remote.accepted_names):  # prefer the uncompressed file: no gunzip per load
        if (directory / name).is_file():
            return directory / name
    return None


def ensure_files(dataset: str, directory: Path, remotes: list[RemoteFile], download_missing: bool) -> list[Path]:
    """Paths of ``remotes`` in ``directory`` (downloading the missing ones if allowed), in order."""
    found = {r.name: _find(directory, r) for r in remotes}
    why = "download=False"
    if download_missing and any(p is None for p in found.values()):
        why = "download failed: offline, or no mirror answered"
        for r in remotes:
            if found[r.name] is None:
                found[r.name] = download(r, directory)
    missing = [r for r in remotes if found[r.name] is None]
    if missing:
        names = [" or ".join(r.accepted_names) for r in missing]
        raise missing_files_error(dataset, directory, names, [u for r in missing for u in r.urls], why)
    return [found[r.name] for r in remotes]  # type: ignore[misc]  # all found above


# ----------------------------------------------------------------------------- CIFAR-10
def safe_extract_tar(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination``, refusing the whole archive if any member could
    escape it (absolute path, ``..``, links, devices): the tar may come from anywhere."""
    try:
        tar = tarfile.open(archive, "r:*")
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataFormatError(f"{archive} is not a readable tar archive ({exc}); delete it and fetch it again") from exc
    with tar:
        for m in members:
            parts = Path(m.name).parts
            if m.name.startswith(("/", "\\")) or Path(m.name).is_absolute() or ".." in parts:
                raise DataFormatError(f"{archive}: refusing to extract member {m.name!r} (path escapes the folder)")
            if not (m.isfile() or m.isdir()):
                raise DataFormatError(f"{archive}: refusing to extract member {m.name!r} (not a regular file)")
        # The "data" filter repeats these checks inside tarfile (defence in depth).
        tar.extractall(destination, members=members, filter="data")


def _cifar10_paths(folder: Path) -> list[Path]:
    return [folder / n for n in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)]


def ensure_cifar10(directory: Path, download_missing: bool) -> Path:
    """The extracted ``cifar-10-batches-bin`` folder under ``directory``: used as is when complete,
    else extracted from the tar.gz there, else (if allowed) downloaded and extracted."""
    folder = directory / CIFAR10_FOLDER
    if all(p.is_file() for p in _cifar10_paths(folder)):
        return folder
    archive = directory / CIFAR10_ARCHIVE.name
    why = "download=False"
    if not archive.is_file() and download_missing:
        why = "download failed: offline, or no mirror answered"
        download(CIFAR10_ARCHIVE, directory)
    if archive.is_file():
        # Extract next to the target, then rename: a concurrent reader never sees half a folder.
        with tempfile.TemporaryDirectory(dir=directory, prefix=".extract-") as tmp:
            safe_extract_tar(archive, Path(tmp))
            extracted = Path(tmp) / CIFAR10_FOLDER
            if not all(p.is_file() for p in _cifar10_paths(extracted)):
                raise DataFormatError(f"{archive} does not contain {CIFAR10_FOLDER}/ with the six batch files")
            if not all(p.is_file() for p in _cifar10_paths(folder)):  # else another process finished first
                shutil.rmtree(folder, ignore_errors=True)  # a partial folder from an interrupted run
                try:
                    os.replace(extracted, folder)
                except OSError:
                    if not all(p.is_file() for p in _cifar10_paths(folder)):  # lost the race to a complete one?
                        raise
        return folder
    missing = [f"{CIFAR10_FOLDER}/{p.name}" for p in _cifar10_paths(folder) if not p.is_file()]
    names = [f"{CIFAR10_ARCHIVE.name} (or the extracted folder, missing: {', '.join(missing)})"]
    raise missing_files_error("cifar10", directory, names, list(CIFAR10_ARCHIVE.urls), why)
