"""Datasets: the embedded digits split and Debian's Fashion-MNIST IDX files."""
import gzip

import numpy as np
import pytest

from fastsnn_lava.data import load_dataset, read_idx
from fastsnn_lava.errors import FastSNNError


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert np.array_equal(a.x_test, b.x_test) and a.x_test.max() == 16 and a.input_max == 16
    assert np.all(np.bincount(a.y_test, minlength=10) >= 35)


def test_fashion_mnist_from_debian(require_fashion):
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert np.all(np.bincount(ds.y_train) == 6000) and np.all(np.bincount(ds.y_test) == 1000)
    assert abs(ds.x_test.mean() / 255 - 0.2868) < 1e-3 and ds.input_max == 255


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "a-idx3-ubyte.gz"
    with gzip.open(good, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8)))
    assert read_idx(good).shape == (2, 2, 2)
    trunc = tmp_path / "b-idx3-ubyte"
    trunc.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(5))
    with pytest.raises(FastSNNError, match="truncated"):
        read_idx(trunc)
    foreign = tmp_path / "c"
    foreign.write_bytes(b"PK\x03\x04whatever")
    with pytest.raises(FastSNNError, match="not an IDX file"):
        read_idx(foreign)


def test_unknown_dataset():
    with pytest.raises(FastSNNError, match="unknown dataset"):
        load_dataset("imagenet")
