"""Small dataset files written in the real formats (IDX, CIFAR-10 binary), and a fake network:
what the data tests read instead of downloading anything."""
from __future__ import annotations

import gzip
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import data_formats


def idx_bytes(images: np.ndarray) -> bytes:
    """A uint8 IDX3 file: magic 00 00 08 03, three big-endian uint32 dims, the pixels."""
    assert images.dtype == np.uint8 and images.ndim == 3
    return bytes([0, 0, 0x08, 3]) + struct.pack(">III", *images.shape) + images.tobytes()


def write_idx(path: Path, images: np.ndarray) -> Path:
    """Write ``images`` (N, H, W) uint8 to ``path``, gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = idx_bytes(images)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return path


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: 1 label byte then 3072 channel-major pixels, per image."""
    assert images.shape[1:] == (3, 32, 32) and images.dtype == np.uint8
    flat = images.reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], flat], axis=1).tobytes()


def serve(monkeypatch: pytest.MonkeyPatch, payloads: dict[str, bytes]) -> list[str]:
    """Replace the network: URLs in ``payloads`` answer with their bytes, others are offline."""
    calls: list[str] = []

    def fake_open_url(url: str, timeout: float) -> io.BytesIO:
        calls.append(url)
        if url not in payloads:
            raise urllib.error.URLError("offline (test)")
        return io.BytesIO(payloads[url])

    monkeypatch.setattr(data_formats, "open_url", fake_open_url)
    return calls


IDX_FILES = {
    "mnist": ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    "fashion_mnist": ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    "kmnist": ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    "qmnist": ("qmnist-train-images-idx3-ubyte.gz", "qmnist-test-images-idx3-ubyte.gz"),
}
CIFAR_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def random_images(seed: int, n: int, shape: tuple[int, ...] = (28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
