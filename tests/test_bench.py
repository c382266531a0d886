"""Cheap checks of the benchmark code (make bench itself is not part of make test)."""
import json

import h5py
import numpy as np
import pytest
import torch

from benchmarks import rate_conversion
from benchmarks.common import macs_per_image
from benchmarks.lava_cost import to_cuba
from fastsnn_lava.data import load_dataset
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.netx import write_network


def _net():
    rng = np.random.default_rng(0)
    return Network((1, 6, 6), [
        Layer("conv", rng.integers(-9, 10, (4, 1, 3, 3)), np.zeros(4), SignedIF(20), (1, 6, 6), (4, 3, 3),
              stride=2, padding=1),
        Layer("dense", rng.integers(-9, 10, (5, 36)), np.zeros(5), SignedIF(20), (4, 3, 3), (5,)),
        Layer("dense", rng.integers(-9, 10, (3, 5)), np.zeros(3), Accumulator(), (5,), (3,))], bits=2)


def test_macs_per_image_counts_first_layer_once_and_last_on_counts():
    net = _net()
    conv, d1, d2 = 36 * 9, 5 * 36, 3 * 5
    assert macs_per_image(net) == conv + 3 * d1 + d2
    assert macs_per_image(net, exploited=False) == 3 * (conv + d1 + d2)


def test_cuba_copy_has_vanilla_neurons_and_same_weights(tmp_path):
    net = _net()
    write_network(net, tmp_path / "s.h5")
    to_cuba(tmp_path / "s.h5", tmp_path / "c.h5")
    with h5py.File(tmp_path / "s.h5") as s, h5py.File(tmp_path / "c.h5") as c:
        for k in s["layer"]:
            if "neuron" in s["layer"][k]:
                assert c["layer"][k]["neuron/type"][()].decode() == "CUBA"
                assert np.array_equal(s["layer"][k]["weight"][()], c["layer"][k]["weight"][()])
        assert int(c["layer/1/neuron/vThMant"][()]) == 19


def test_rate_conversion_normalises_and_converges(trained):
    _, float_net, meta, _ = trained("mlp", 2)
    ds = load_dataset("digits")
    xtr = torch.as_tensor(ds.x_train, dtype=torch.float32)
    layers = rate_conversion.normalise(float_net, xtr, ds.input_max)
    # max normalisation: the first hidden layer's largest activation on the data is exactly 1
    mod, w, b = layers[0]
    assert abs(float(torch.nn.functional.linear(xtr.flatten(1) / ds.input_max, w, b).max()) - 1) < 1e-5
    acc = rate_conversion.accuracy_vs_t(layers, ds.x_test, ds.y_test, ds.input_max, (64,), [1, 4, 64])
    assert acc[64] >= meta["float_test_accuracy"] - 0.05
    assert acc[1] < acc[64]


@pytest.mark.parametrize("arch", ["cnn5", "mlp"])
def test_rate_conversion_folds_the_input_normalisation(arch):
    """A normalised dataset's float ANN starts with InputNorm (raw-zero padding for a conv): the rate-coded
    layers, run as an ANN (ReLU between), compute the float ANN exactly; λ scaling does not move the logits."""
    from fastsnn_lava.models import build_float
    from fastsnn_lava.spec import resolve_arch
    torch.manual_seed(0)
    net = build_float(resolve_arch(arch), (3, 16, 16), 10, {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)}).eval()
    x = torch.randint(0, 256, (8, 3, 16, 16))
    a = x.float() / 255
    layers = rate_conversion.normalise(net, x, 255)
    for i, (m, w, b) in enumerate(layers):
        a = rate_conversion.apply_layer(m, w, b, a)
        a = a.clamp(min=0) if i < len(layers) - 1 else a
    with torch.no_grad():
        assert torch.allclose(a, net(x.float() / 255), atol=1e-5, rtol=1e-4)


def test_bench_table_renders_the_result_files(tmp_path, repository_file):
    ubt = repository_file("scripts/update_bench_table.py")
    machine = {"cpu": "TestCPU", "cores": 2, "gpu": None, "versions": {"torch": "t", "numpy": "n"},
               "date": "d", "full": False}
    rec = {"nets": [{"arch": "mlp", "engine_images_per_s": 12345.0, "lava_images_per_s": 12.5,
                     "speedup_vs_lava": 987.6, "agreement": 1.0, "lava_samples": [4, 16],
                     "bound_images_per_s": 20000.0, "fraction_of_bound": 0.61725, "macs_per_image": 2.5e5}],
           "machine": machine}
    (tmp_path / "throughput.json").write_text(json.dumps(rec))
    ubt.RESULTS = tmp_path
    text = ubt.render()
    assert "**988×**" in text and "**0.62**" in text and "100.0 % of 16 samples" in text and "TestCPU" in text
    ubt.RESULTS = tmp_path / "none"
    assert "make bench" in ubt.render()


def test_smallest_t_is_the_first_crossing_and_table_lists_every_bit_width(tmp_path, repository_file):
    from benchmarks.accuracy_vs_t import smallest_t
    assert smallest_t({1: 0.5, 3: 0.931, 7: 0.92, 15: 0.94}, 0.935) == 3
    assert smallest_t({1: 0.5, 3: 0.929}, 0.935) is None
    ubt = repository_file("scripts/update_bench_table.py")
    curves = {"fastsnn_signed": {"3": 0.9}, "unsigned_if": {"3": 0.8}, "fastsnn_signed_b4": {"15": 0.93},
              "rate_maxnorm": {"3": 0.1, "128": 0.93}}
    rec = {"nets": [{"arch": "cnn5", "bits": 2, "samples": 10, "ann_accuracy": 0.935, "curves": curves,
                     "smallest_t_within_0.5pp": {"fastsnn_signed": None, "unsigned_if": None,
                                                 "fastsnn_signed_b4": 15, "rate_maxnorm": 128}}],
           "machine": {"cpu": "c", "cores": 2, "gpu": None, "versions": {"torch": "t", "numpy": "n"},
                       "date": "d", "full": False}}
    (tmp_path / "accuracy_vs_t.json").write_text(json.dumps(rec))
    ubt.RESULTS = tmp_path
    text = ubt.render()
    assert "Fast-SNN signed b = 2, 4" in text and "**— / 15**" in text and "| Fast-SNN (signed IF), b = 4 |" in text
    assert "| 93.0 |" in text


def test_bench_table_reports_fine_tuning_time_estimated_or_measured(tmp_path, repository_file):
    ubt = repository_file("scripts/update_bench_table.py")
    net = {"arch": "cnn5", "bits": 2, "samples_per_layer": 2000, "full_epoch_samples_per_layer": 54000,
           "tuned_layers": 4, "median_wall_s": 95.0, "median_full_epoch_estimate_s": 750.0,
           "measured_full_epoch": False}
    (tmp_path / "finetune.json").write_text(json.dumps({"nets": [net]}))
    ubt.RESULTS = tmp_path
    text = ubt.render()
    assert "**12.5 min** estimated from 2,000 images per layer (95 s)" in text and "4 layers × 54,000" in text
    (tmp_path / "finetune.json").write_text(json.dumps({"nets": [dict(net, measured_full_epoch=True,
                                                                      median_wall_s=900.0)]}))
    assert "**15.0 min** measured" in ubt.render()


def test_fill_section_replaces_empty_and_filled_sections_only_between_markers(tmp_path):
    from fastsnn_lava.atomic import fill_section
    p = tmp_path / "README.md"
    p.write_text("a\n<!-- t:start -->\n<!-- t:end -->\nb\n<!-- u:start -->\nold\n<!-- u:end -->\n")
    assert fill_section(p, "t", "one\ntwo\n")
    assert fill_section(p, "u", "new")
    assert p.read_text() == "a\n<!-- t:start -->\none\ntwo\n<!-- t:end -->\nb\n<!-- u:start -->\nnew\n<!-- u:end -->\n"
    assert fill_section(p, "t", "three")  # a filled section is replaced, not appended to
    assert "one" not in p.read_text() and "three\n<!-- t:end -->" in p.read_text()
    assert not fill_section(p, "missing", "x") and "x" not in p.read_text()


def test_bench_table_gives_qat_training_throughput_as_a_ratio_to_float(tmp_path, repository_file):
    ubt = repository_file("scripts/update_bench_table.py")
    rec = {"nets": [{"arch": "cnn5", "float_epoch_median_s": 2.0, "qat_epoch_median_s": 2.5, "ratio": 1.25,
                     "train_samples": 4000}]}
    (tmp_path / "training.json").write_text(json.dumps(rec))
    ubt.RESULTS = tmp_path
    assert "2.00 s / 2.50 s = **0.80**" in ubt.render()
