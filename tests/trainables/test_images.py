"""Image grids: the layout, and the row labels written in a left margin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.images import image_grid, reconstruction_pairs, save_png


def test_grid_places_every_image_and_pads_in_white() -> None:
    images = torch.zeros(3, 1, 2, 2)           # black images, white padding
    grid = image_grid(images, nrow=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1)
    assert (grid[1:3, 1:3] == 0).all() and (grid[1:3, 4:6] == 0).all() and (grid[4:6, 1:3] == 0).all()
    assert (grid[4:6, 4:6] == 255).all() and (grid[0] == 255).all()   # the missing 4th image, the border


def test_pairs_alternate_rows_of_originals_and_reconstructions() -> None:
    x, r = torch.zeros(4, 1, 2, 2), torch.ones(4, 1, 2, 2)
    pairs = reconstruction_pairs(x, r, cols=2)
    assert [float(p.mean()) for p in pairs] == [0, 0, 1, 1, 0, 0, 1, 1]


def test_row_labels_go_in_a_margin_beside_their_rows(tmp_path: Path) -> None:
    images = torch.zeros(4, 1, 8, 8)
    plain = Image.open(save_png(images, tmp_path / "plain.png", nrow=2))
    labelled = Image.open(save_png(images, tmp_path / "labelled.png", nrow=2, row_labels=["input", "recon"]))
    assert labelled.height == plain.height and labelled.width > plain.width
    margin = labelled.width - plain.width
    arr = np.asarray(labelled)
    assert (arr[:, margin:] == np.asarray(plain)).all()               # the grid itself unchanged, shifted right
    text_rows = np.nonzero((arr[:, :margin] < 128).any(axis=1))[0]    # ink in the margin
    row_height = (8 + 1) * 2
    assert {int(y) // row_height for y in text_rows} == {0, 1}         # beside both rows, none elsewhere
