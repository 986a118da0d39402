"""Write scikit-learn's 8x8 digits as ``digits.npz`` beside this script (or at the path given):
uint8 images (N, 1, 8, 8) in 0..255, with the test split provided (keys ``train`` and ``test``;
vaesearch carves the validation split from ``train`` with ``data.val_fraction``).

    python examples/plugins/make_digits_npz.py [OUT.npz]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main(out: Path) -> None:
    images = load_digits().images                                       # (1797, 8, 8), values 0..16
    images = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..255
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    n_test = len(images) // 10
    np.savez_compressed(out, train=images[order[n_test:]], test=images[order[:n_test]])
    print(f"wrote {out}: train {len(images) - n_test}, test {n_test} images of 1x8x8 (uint8)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("digits.npz"))
