"""Splits, binarisation, resize and minibatching through ``trainables.data``'s public API."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.trainables.data_files import is_binary
from trainables.data import (
    BINARIZE_MODES,
    available_datasets,
    binarize_batch,
    dataset_shape,
    load_dataset,
    minibatch_indices,
)


def test_dynamic_binarises_only_val_and_test_deterministically() -> None:
    a = load_dataset("digits", binarize="dynamic", seed=5)
    b = load_dataset("digits", binarize="dynamic", seed=5)
    grey = load_dataset("digits", binarize="none", seed=5)
    assert not is_binary(a.train) and torch.equal(a.train, grey.train)
    assert is_binary(a.val) and is_binary(a.test)
    assert torch.equal(a.val, b.val) and torch.equal(a.test, b.test)
    assert not torch.equal(a.val, load_dataset("digits", binarize="dynamic", seed=6).val)


def test_static_binarises_every_split_once() -> None:
    a = load_dataset("digits", binarize="static", seed=2)
    assert all(is_binary(x) for x in (a.train, a.val, a.test))
    assert torch.equal(a.train, load_dataset("digits", binarize="static", seed=2).train)
    batch = a.train[:16]
    assert binarize_batch(batch, "static") is batch


def test_binarize_batch_modes() -> None:
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y1 = binarize_batch(x, "dynamic", torch.Generator().manual_seed(1))
    y2 = binarize_batch(x, "dynamic", torch.Generator().manual_seed(1))
    assert is_binary(y1) and torch.equal(y1, y2) and y1.shape == x.shape
    assert abs(y1.mean().item() - x.mean().item()) < 0.05  # a Bernoulli sample of x, not a threshold
    assert not torch.equal(y1, binarize_batch(x, "dynamic", torch.Generator().manual_seed(2)))
    assert binarize_batch(x, "none") is x
    with pytest.raises(ValueError, match="dynamic.*static.*none"):
        binarize_batch(x, "threshold")


# --------------------------------------------------------------------------------- resize
def test_resize_to_32_matches_unchunked_interpolation() -> None:
    # mnist5k's 4000 training images span more than one resize chunk.
    s = load_dataset("mnist5k", binarize="none", resize=32)
    assert s.shape == (1, 32, 32) == dataset_shape("mnist5k", resize=32)
    assert 0.0 <= s.train.min() and s.train.max() <= 1.0 and s.test.shape[1:] == (1, 32, 32)
    ref = load_dataset("mnist5k", binarize="none").train
    direct = F.interpolate(ref, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)
    torch.testing.assert_close(s.train, direct)


def test_resize_happens_before_binarisation() -> None:
    s = load_dataset("digits", binarize="static", resize=16)
    assert s.shape == (1, 16, 16) and is_binary(s.train)


# ---------------------------------------------------------------------------- minibatches
def test_minibatch_indices_cover_every_index_once() -> None:
    batches = list(minibatch_indices(103, 10, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))
    assert not torch.equal(torch.cat(batches), torch.arange(103))  # shuffled


def test_minibatch_indices_drop_last_and_reproducible() -> None:
    a = list(minibatch_indices(103, 10, generator=torch.Generator().manual_seed(4), drop_last=True))
    b = list(minibatch_indices(103, 10, generator=torch.Generator().manual_seed(4), drop_last=True))
    c = list(minibatch_indices(103, 10, generator=torch.Generator().manual_seed(5), drop_last=True))
    assert [len(x) for x in a] == [10] * 10
    assert len(torch.cat(a).unique()) == 100
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(torch.cat(a), torch.cat(c))
    assert list(minibatch_indices(5, 10, drop_last=True)) == []
    assert all(b.device.type == "meta" for b in minibatch_indices(7, 3, device="meta"))


def test_minibatch_indices_validates_eagerly() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_indices(10, 0)  # no iteration needed to see the error
    with pytest.raises(ValueError, match="n must be"):
        minibatch_indices(-1, 4)


# ------------------------------------------------------------------------- API and errors
def test_to_device_moves_splits_and_skips_noop() -> None:
    s = load_dataset("digits", max_train=20)
    assert s.to("cpu") is s
    moved = s.to("meta")
    assert {moved.train.device.type, moved.val.device.type, moved.test.device.type} == {"meta"}
    assert s.train.device.type == "cpu" and moved.binarize == s.binarize and moved.shape == s.shape


def test_unknown_names_list_the_valid_ones() -> None:
    assert set(available_datasets()) == {"mnist5k", "digits", "mnist", "fashion_mnist", "kmnist", "qmnist", "cifar10",
                                         "arrays", "image_folder", "callable"}
    with pytest.raises(ValueError, match="cifar10.*mnist5k"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="digits"):
        dataset_shape("svhn")
    with pytest.raises(ValueError, match="binarize mode") as err:
        load_dataset("digits", binarize="fixed")
    assert all(mode in str(err.value) for mode in BINARIZE_MODES)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
        ({"resize": 3}, "resize"),
        ({"resize": 32.0}, "resize"),
        ({"max_train": 0}, "max_train"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_options_name_the_argument(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        load_dataset("digits", **kwargs)  # type: ignore[arg-type]
