"""--samples N takes a class-balanced, seeded subset everywhere (fastsnn-run, fastsnn-report,
fastsnn-diagnose): an image folder's test split is sorted by class, and its first 8 images were once
all of class 0 (accuracy 0.0 with agreement 1.0)."""
import numpy as np
import pytest

from fastsnn_lava.data import balanced_subset, load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.evaluation import dataset_samples


def test_balanced_subset_takes_the_classes_in_turn():
    y = np.repeat([0, 1, 2], 10)  # sorted by class, as an image folder
    idx = balanced_subset(y, 6)
    assert np.bincount(y[idx]).tolist() == [2, 2, 2]
    assert np.all(np.diff(idx) > 0)  # in the dataset's order
    assert np.array_equal(idx, balanced_subset(y, 6))  # seeded: the same every call
    assert np.bincount(y[balanced_subset(y, 7)]).tolist() == [3, 2, 2]
    assert not np.array_equal(balanced_subset(y, 6, seed=1), idx)  # another seed, other samples …
    assert np.bincount(y[balanced_subset(y, 6, seed=1)]).tolist() == [2, 2, 2]  # … as balanced
    assert np.array_equal(balanced_subset(y, None), np.arange(30))
    assert np.array_equal(balanced_subset(y, 99), np.arange(30))


def test_balanced_subset_with_a_rare_class():
    y = np.array([0] * 20 + [1] * 2 + [2] * 20)
    counts = np.bincount(y[balanced_subset(y, 12)]).tolist()
    assert counts == [5, 2, 5]  # the rare class runs out, the others fill in


def test_run_samples_on_a_class_sorted_folder_cover_every_class(tmp_path, datagen):
    root = datagen.imagefolder(tmp_path / "pics", n_per_class=30)  # test split: 10 per class, sorted
    name = f"imagefolder:{root}"
    ds = load_dataset(name)
    assert ds.y_test[:8].tolist() == [0] * 8  # what "the first 8" used to mean
    x, y, n = dataset_samples(name, ds.input_shape, 8, "the network takes", "the network")
    assert n == 8 and len(x) == 8 and sorted(set(y.tolist())) == [0, 1, 2]
    with pytest.raises(FastSNNError, match="--samples must be at least 1"):
        dataset_samples(name, ds.input_shape, 0, "the network takes", "the network")
