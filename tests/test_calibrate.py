"""Bias calibration (fastsnn_lava.tuning.calibration): integer bias shifts towards the QANN's mean levels."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsnn_lava import checkpoint
from fastsnn_lava.cli.finetune import main as finetune_cli
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.engine import if_run
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.netx import read_network
from fastsnn_lava.pipeline import convert, export, finetune
from fastsnn_lava.reference import qann_forward, snn_forward
from fastsnn_lava.tuning.calibration import bisect_shift, calibrate, channel_mean


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([2, 4, 10, 40]), st.integers(1, 15), st.booleans())
def test_spike_count_never_falls_when_every_step_gains_current(seed, theta, steps, signed):
    """The monotonicity the bisection relies on: I'(t) ≥ I(t) for all t ⇒ N' ≥ N (signed and unsigned)."""
    g = torch.Generator().manual_seed(seed)
    cur = torch.randint(-2 * theta, 2 * theta + 1, (steps, 64), generator=g).double()
    more = cur + torch.randint(0, theta + 1, (steps, 64), generator=g).double()
    n, n_more = (if_run(c, theta, signed, False, steps).sum(0) for c in (cur, more))
    assert bool((n_more >= n).all())


def test_bisection_finds_the_best_shift_of_every_channel():
    """bisect_shift's δ equals the exhaustive argmin over δ ∈ [−θ, θ] of |mean count − target| (ties: either)."""
    g = torch.Generator().manual_seed(1)
    theta, T = 12, 3
    layer = Layer("dense", np.zeros((5, 4), dtype=np.int64), np.zeros(5, dtype=np.int64), SignedIF(theta), (4,), (5,))
    cur = torch.randint(-20, 21, (T, 50, 5), generator=g).double()
    target = torch.tensor([0.0, 0.7, 1.5, 2.2, 3.0], dtype=torch.float64)
    delta = bisect_shift(cur, layer, target)
    for c in range(5):
        errs = [abs(float(if_run(cur[:, :, c] + d, theta, True, False, T).sum(0).mean()) - float(target[c]))
                for d in range(-theta, theta + 1)]
        got = abs(float(if_run(cur[:, :, c] + delta[c], theta, True, False, T).sum(0).mean()) - float(target[c]))
        assert got == pytest.approx(min(errs)), c


def test_calibration_only_shifts_hidden_biases_and_brings_mean_counts_to_the_qann(resnet8):
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    x = load_dataset("digits").x_train[:200]
    cal, rep = calibrate(net, x)
    assert rep.samples == 200 and len(rep.shifts) == len(net.layers) - 2
    for i, (a, b) in enumerate(zip(net.layers, cal.layers)):
        assert np.array_equal(a.weight, b.weight) and a.threshold == b.threshold
        assert all(sa.equals(sb) for sa, sb in zip(a.skips, b.skips))
        if i in (0, len(net.layers) - 1):  # constant-current first layer and classifier: untouched
            assert a.equals(b)
    # δ = 0 is a candidate, so no layer ends further from its QANN's mean than it started
    assert all(after <= before + 1e-12 for before, after in zip(rep.mismatch_before, rep.mismatch_after))
    assert sum(rep.mismatch_after) < sum(rep.mismatch_before)  # and this network has sequential error to fix
    # recomputed independently with the reference simulation on the same images
    snn, ref = snn_forward(cal, x), qann_forward(net, x)
    for li in range(1, len(net.layers) - 1):
        err = float((channel_mean(snn.counts[li]) - channel_mean(ref.levels[li])).abs().mean())
        assert err == pytest.approx(rep.mismatch_after[li - 1], abs=1e-9)


def test_calibrate_method_and_option_record_and_export_losslessly(resnet8, tmp_path, capsys):
    dst = tmp_path / "r8_cal.pt"
    assert finetune_cli([str(resnet8), "--method", "calibrate", "--calibrate", "100", "--no-progress",
                         "-o", str(dst)]) == 0
    assert "bias calibration on 100 images" in capsys.readouterr().out
    net = convert(str(dst))
    rec = checkpoint.load(str(dst))[2]["finetune"]
    assert rec["method"] == "calibrate" and rec["calibration"]["samples"] == 100
    assert rec["snn_test_accuracy"] == pytest.approx(float(
        (snn_forward(net, load_dataset("digits").x_test).out.argmax(1).numpy() == load_dataset("digits").y_test).mean()))
    export(str(dst), str(tmp_path / "r8_cal.h5"))
    assert read_network(tmp_path / "r8_cal.h5").equals(net)
    # tandem from the calibrated codes: the teacher is still the conversion's QANN, the start is calibrated
    net2, rec2 = finetune(str(resnet8), str(tmp_path / "r8_cal_t.pt"), method="tandem", calibrate=100, checks=2,
                          progress=False)
    assert rec2["calibration"]["shifts"] == rec["calibration"]["shifts"]  # same seeded images, same shifts
    assert rec2["tandem"]["heldout_kl_after"] <= rec2["tandem"]["heldout_kl_before"]


def test_calibration_refusals(resnet8, tmp_path, capsys):
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    with pytest.raises(FastSNNError, match="signed"):
        calibrate(to_network(qann, "unsigned_if"), load_dataset("digits").x_train[:10])
    with pytest.raises(FastSNNError, match="at least one image"):
        calibrate(net, load_dataset("digits").x_train[:0])
    z = np.zeros
    two = Network((4,), [Layer("dense", z((3, 4), int), z(3, int), SignedIF(2), (4,), (3,)),
                         Layer("dense", z((2, 3), int), z(2, int), Accumulator(), (3,), (2,))], bits=2)
    with pytest.raises(FastSNNError, match="no hidden layer after the first"):
        calibrate(two, np.zeros((5, 4), dtype=np.int64))
    assert finetune_cli([str(resnet8), "--method", "calibrate", "--calibrate", "0", "-o", str(tmp_path / "z.pt")]) == 2
    err = capsys.readouterr().err
    assert "--calibrate" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "z.pt").exists()
