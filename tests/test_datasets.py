"""Datasets beyond digits: imagefolder:DIR, idx:DIR, mnist/cifar10 from the cache, augmentation,
and their bad-input errors (one line each)."""
import numpy as np
import pytest
import torch

from fastsnn_lava.data import load_dataset
from fastsnn_lava.data.augment import crop_flip
from fastsnn_lava.errors import FastSNNError


def test_imagefolder_with_train_and_test(tmp_path, datagen):
    root = datagen.imagefolder(tmp_path / "pics", n_per_class=6, channels=3)
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.classes == ["cat", "dog", "emu"] and ds.input_shape == (3, 8, 8) and ds.input_max == 255
    assert ds.x_train.dtype == np.uint8 and len(ds.x_train) == 18 and len(ds.x_test) == 6
    assert np.bincount(ds.y_train).tolist() == [6, 6, 6]
    x, _ = datagen.images(6, 3, 8, 3, seed=0)  # the pixels written, in (N, H, W, C)
    assert np.array_equal(ds.x_train, x.transpose(0, 3, 1, 2))
    mean = ds.x_train.transpose(1, 0, 2, 3).reshape(3, -1).mean(1) / 255
    assert np.allclose(ds.mean, mean) and len(ds.std) == 3 and not ds.augment


def test_imagefolder_single_folder_split_is_deterministic(tmp_path, datagen):
    root = datagen.imagefolder(tmp_path / "pics", n_per_class=10, split=False)
    a, b = load_dataset(f"imagefolder:{root}"), load_dataset(f"imagefolder:{root}")
    assert a.input_shape == (1, 8, 8) and len(a.x_test) == 6 and len(a.x_train) == 24
    assert np.bincount(a.y_test).tolist() == [2, 2, 2]
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz, datagen):
    root = datagen.idx_folder(tmp_path / "idx", n_per_class=9, gz=gz)
    ds = load_dataset(f"idx:{root}")
    assert ds.x_train.shape == (27, 1, 8, 8) and ds.x_test.shape == (9, 1, 8, 8)
    assert ds.classes == ["0", "1", "2"] and ds.x_train.dtype == np.uint8
    assert abs(ds.mean[0] - ds.x_train.mean() / 255) < 1e-12


def test_mnist_from_the_cache_and_offline_errors(tmp_path, monkeypatch, datagen):
    monkeypatch.setenv("FASTSNN_DATA", str(tmp_path))
    monkeypatch.setenv("FASTSNN_OFFLINE", "1")
    for name in ("mnist", "cifar10"):
        with pytest.raises(FastSNNError, match="FASTSNN_DATA") as e:
            load_dataset(name)
        assert "\n" not in str(e.value)
    datagen.idx_folder(tmp_path / "MNIST" / "raw", n_per_class=4, gz=False)
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (12, 1, 8, 8) and ds.mean == (0.1307,) and not ds.augment


def test_crop_flip_shifts_and_flips_integer_pixels():
    x = torch.arange(4 * 2 * 6 * 6, dtype=torch.uint8).reshape(4, 2, 6, 6)
    y = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    for a, b in zip(x, y):  # every output is a zero-padded shift of the input, maybe mirrored
        p = torch.nn.functional.pad(a, (2, 2, 2, 2))
        found = any(torch.equal(b, p[:, i:i + 6, j:j + 6]) or torch.equal(b, p[:, i:i + 6, j:j + 6].flip(-1))
                    for i in range(5) for j in range(5))
        assert found
    assert not torch.equal(y, x)


def _bad_folder(tmp_path, case, datagen):
    from PIL import Image
    root = tmp_path / case
    if case == "missing":
        return f"imagefolder:{root}"
    if case == "idx-missing-file":
        datagen.idx_folder(root)
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
        return f"idx:{root}"
    if case == "idx-4d":
        datagen.idx_folder(root)
        datagen.write_idx(root / "train-images-idx3-ubyte.gz", np.zeros((60, 8, 8, 3)))
        return f"idx:{root}"
    datagen.imagefolder(root, n_per_class=3)
    if case == "empty-class":
        (root / "train" / "fox").mkdir()
        (root / "test" / "fox").mkdir()
    elif case == "sizes":
        Image.fromarray(np.zeros((9, 8), np.uint8)).save(root / "train" / "cat" / "odd.png")
    elif case == "unreadable":
        (root / "test" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    elif case == "classes":
        (root / "test" / "emu").rename(root / "test" / "yak")
    elif case == "16-bit":
        Image.fromarray(np.zeros((8, 8), np.uint16) + 999).save(root / "train" / "cat" / "deep.png")
    return f"imagefolder:{root}"


BAD = {"missing": "not a folder", "idx-missing-file": "lacks t10k-labels", "idx-4d": "one channel",
       "empty-class": "holds no images", "sizes": "differ in size", "unreadable": "not a readable image",
       "classes": "same class folders", "16-bit": "8-bit"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_folders(tmp_path, case, datagen):
    with pytest.raises(FastSNNError, match=BAD[case]) as e:
        load_dataset(_bad_folder(tmp_path, case, datagen))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, words", [("imagenet", "unknown dataset"), ("idx:", "names no folder"),
                                         ("imagefolder", "unknown dataset")])
def test_bad_names(name, words):
    with pytest.raises(FastSNNError, match=words) as e:
        load_dataset(name)
    assert "idx:DIR" in str(e.value) or "idx:" in name
