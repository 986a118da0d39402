"""Image grids of reconstructions and prior samples, written as PNG (Pillow)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> uint8 array (rows·(H+pad)+pad, cols·(W+pad)+pad[, 3])."""
    if images.dim() != 4:
        raise ValueError(f"image_grid expects (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.ones((c, rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float32)
    arr = images.detach().float().clamp(0, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = arr[i]
    out = (grid * 255.0 + 0.5).astype(np.uint8)
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def save_png(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2,
             row_labels: Sequence[str] | None = None, pad: int = 1) -> Path:
    """Write a grid of ``images`` to ``path``, upscaled ``scale``× (nearest) so small digits are
    visible; ``row_labels`` (one per grid row, cycled) are written in a margin on the left."""
    grid = image_grid(images, nrow=nrow, pad=pad)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels:
        img = _label_rows(img, list(row_labels), row_height=(images.shape[2] + pad) * scale, top=pad * scale)
    path = Path(path)
    img.save(path)
    return path


def _label_rows(img: Image.Image, labels: list[str], *, row_height: int, top: int) -> Image.Image:
    """``img`` with a white margin on the left holding ``labels[i % len(labels)]`` beside row i."""
    font = ImageFont.load_default()
    rows = max(1, (img.height - top) // row_height)
    texts = [labels[i % len(labels)] for i in range(rows)]
    width = max(int(font.getlength(t)) for t in texts) + 6
    out = Image.new(img.mode, (img.width + width, img.height), color=255 if img.mode == "L" else (255, 255, 255))
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    ink = 0 if img.mode == "L" else (0, 0, 0)
    for i, text in enumerate(texts):
        draw.text((2, top + i * row_height + row_height // 2), text, fill=ink, font=font, anchor="lm")
    return out


def reconstruction_pairs(originals: torch.Tensor, reconstructions: torch.Tensor, cols: int) -> torch.Tensor:
    """Alternate rows of ``cols`` originals and their reconstructions: (N, C, H, W) x2 -> (2N, C, H, W)."""
    chunks = []
    for start in range(0, originals.shape[0], cols):
        chunks += [originals[start : start + cols], reconstructions[start : start + cols]]
    return torch.cat(chunks, dim=0)
