"""Layer-wise fine-tuning and the per-layer diagnosis (issue 3)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.data import load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.netx import read_network
from fastsnn_lava.pipeline import convert, export, finetune
from fastsnn_lava.reference import run_batches, snn_forward

_FT = {}


@pytest.fixture
def tuned(trained, tmp_path_factory):
    """(original checkpoint, fine-tuned checkpoint, record) for the digits CNN at b = 2, made once."""
    if not _FT:
        _, _, _, path = trained("cnn", 2)
        out = tmp_path_factory.mktemp("ft") / "model_ft.pt"
        _, rec = finetune(str(path), str(out), epochs=2, progress=False)
        _FT.update(path=path, out=out, rec=rec)
    return _FT["path"], _FT["out"], _FT["rec"]


def test_finetune_tunes_hidden_layers_2_to_L_minus_1_on_a_frozen_grid(tuned):
    path, out, rec = tuned
    before, after = convert(str(path)), convert(str(out))
    assert [r["layer"] for r in rec["layers"]] == list(range(2, len(before.layers)))
    for i, (a, b) in enumerate(zip(before.layers, after.layers)):
        assert a.threshold == b.threshold and a.in_shape == b.in_shape
        if i in (0, len(before.layers) - 1):  # first layer and classifier are never tuned
            assert a.equals(b)
        assert np.abs(b.weight).max() <= 127 and np.abs(b.bias).max() <= 4095
    # the acceptance rule only keeps updates that lower the held-out mismatch
    for r in rec["layers"]:
        assert r["mismatch_after"] <= r["mismatch_before"]
        assert (r["epochs_kept"] > 0) == (r["mismatch_after"] < r["mismatch_before"])
    for r, a, b in zip(rec["layers"], before.layers[1:], after.layers[1:]):
        if not r["epochs_kept"]:  # a layer whose every epoch was rejected is restored exactly
            assert a.equals(b)


def test_finetuned_checkpoint_exports_losslessly_and_keeps_test_accuracy(tuned, tmp_path):
    _, out, rec = tuned
    net = export(str(out), str(tmp_path / "ft.h5"))
    assert read_network(tmp_path / "ft.h5").equals(net)
    ds = load_dataset("digits")
    acc = float((run_batches(net, ds.x_test, snn_forward).argmax(1) == ds.y_test).mean())
    assert acc == rec["snn_test_accuracy"]
    assert rec["snn_test_accuracy"] >= rec["snn_test_accuracy_before"]


def test_force_keeps_every_epoch_and_the_paper_rule_runs(trained, tmp_path):
    _, _, _, path = trained("mlp", 2)
    _, rec = finetune(str(path), str(tmp_path / "f.pt"), epochs=2, force=True, lr=0.5, progress=False)
    assert rec["rule"] == "force" and all(r["epochs_kept"] == 2 for r in rec["layers"])
    assert not convert(str(tmp_path / "f.pt")).equals(convert(str(path))), "two forced epochs changed nothing"
    _, rec = finetune(str(path), str(tmp_path / "a.pt"), epochs=1, rule="accuracy", max_samples=300, progress=False)
    for r in rec["layers"]:
        assert r["accuracy_before"] is not None
        assert (r["epochs_kept"] > 0) == (r["accuracy_after"] > r["accuracy_before"])


def test_finetune_refuses_unsigned_and_refinetuning(trained, tuned, tmp_path):
    from fastsnn_lava.tuning import finetune as raw
    q, _, _, path = trained("cnn", 2)
    unsigned = convert(str(path), "unsigned")
    with pytest.raises(FastSNNError, match="signed IF"):
        raw(q, unsigned, np.zeros((4, 1, 8, 8)), np.zeros(4, int))
    r = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.finetune", str(tuned[1]), "-o", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "already fine-tuned" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_timesteps_override_matches_default(trained):
    q, _, _, path = trained("cnn", 2)
    net, x = convert(str(path)), load_dataset("digits").x_test[:50]
    assert torch.equal(snn_forward(net, x).out, snn_forward(net, x, timesteps=net.timesteps).out)
    assert snn_forward(net, x, timesteps=1).counts[0].abs().max() <= 1


def test_diagnose_cli_json_and_plot(tuned, tmp_path):
    _, out, _ = tuned
    js, png = tmp_path / "d.json", tmp_path / "d.png"
    r = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.diagnose", str(out), "--json", str(js),
                        "--plot", str(png), "--sweep-samples", "200"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(js.read_text())
    assert set(rec["variants"]) == {"unsigned", "signed", "signed_finetuned"}
    T = rec["timesteps"]
    assert rec["accuracy_vs_T"]["T"] == list(range(1, 2 * T + 1)) and rec["accuracy_vs_T"]["samples"] == 200
    for name, v in rec["variants"].items():
        assert len(v["layers"]) == 4 and len(rec["accuracy_vs_T"][name]) == 2 * T
        assert v["layers"][0]["mean_abs_error_theta"] == 0  # constant input current: no sequential error
        for lay in v["layers"]:
            assert 0 <= lay["count_mismatch_share"] <= 1 and lay["mean_abs_error_theta"] >= 0
    for s, u in zip(rec["variants"]["signed"]["layers"], rec["variants"]["unsigned"]["layers"]):
        assert s["mean_abs_error_theta"] <= u["mean_abs_error_theta"], "signed IF above unsigned IF"
    # the sweep at T' = T reproduces the variant's accuracy on the same samples
    full = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.diagnose", str(out), "--samples", "200",
                           "--sweep-samples", "200", "--json", str(tmp_path / "e.json")], capture_output=True, text=True)
    rec2 = json.loads((tmp_path / "e.json").read_text())
    assert full.returncode == 0
    for name in rec2["variants"]:
        assert rec2["accuracy_vs_T"][name][T - 1] == rec2["variants"][name]["accuracy"]
    from PIL import Image
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 300


def test_finetuned_export_equals_reference_on_lava(tuned, tmp_path, require_lava):
    from fastsnn_lava.lava.runner import run_lava
    _, out, _ = tuned
    net = export(str(out), str(tmp_path / "ft.h5"))
    x = load_dataset("digits").x_test[:16]
    lava_out, _ = run_lava(tmp_path / "ft.h5", x, progress=False)
    assert np.array_equal(lava_out, run_batches(net, x, snn_forward))


def test_damaged_finetuned_snn_is_refused(tuned, tmp_path):
    _, out, _ = tuned
    blob = torch.load(out, weights_only=True)
    blob["snn"]["weight"] = blob["snn"]["weight"][:-1]
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(FastSNNError, match="damaged fine-tuned SNN"):
        checkpoint.load(tmp_path / "bad.pt")


def test_finetune_residual_network_keeps_shortcuts_and_exports_losslessly(tmp_path):
    """ResNet-8 (3 shortcuts): forced large steps move the codes of W and b; thresholds and the frozen
    shortcut codes stay; the tuned network exports losslessly and the engine equals the reference."""
    from fastsnn_lava.engine import Engine
    from fastsnn_lava.pipeline import train
    src, dst = tmp_path / "r8.pt", tmp_path / "r8_ft.pt"
    train("digits", "resnet8", 2, str(src), epochs=1, qat_epochs=1, progress=False)
    net, rec = finetune(str(src), str(dst), epochs=1, force=True, lr=0.5, max_samples=300, progress=False)
    before = convert(str(src))
    assert [r["layer"] for r in rec["layers"]] == list(range(2, len(before.layers)))
    changed = [i for i, (a, b) in enumerate(zip(before.layers, net.layers)) if not a.equals(b)]
    assert changed and all(i in range(1, len(before.layers) - 1) for i in changed)
    for a, b in zip(before.layers, net.layers):
        assert a.threshold == b.threshold and len(a.skips) == len(b.skips)
        assert all(sa.equals(sb) for sa, sb in zip(a.skips, b.skips))
    assert sum(len(layer.skips) for layer in net.layers) == 3
    exported = export(str(dst), str(tmp_path / "r8_ft.h5"))
    assert read_network(tmp_path / "r8_ft.h5").equals(net) and exported.equals(net)
    x = load_dataset("digits").x_test
    assert np.array_equal(Engine(net).run(x), run_batches(net, x, snn_forward))
    # the default rule never keeps an update that raises a layer's held-out mismatch
    _, rec2 = finetune(str(src), str(tmp_path / "r8_ft2.pt"), epochs=1, lr=0.5, max_samples=300, progress=False)
    assert all(r["mismatch_after"] <= r["mismatch_before"] for r in rec2["layers"])


def test_checks_per_epoch_accept_within_an_epoch(trained, tmp_path):
    """--checks N runs N acceptance checks per epoch: with force all of them are kept; with the
    mismatch rule the kept state never has a higher held-out mismatch than the start."""
    _, _, _, path = trained("mlp", 2)
    _, rec = finetune(str(path), str(tmp_path / "f.pt"), epochs=1, force=True, lr=0.5, checks=3, progress=False)
    assert rec["checks_per_epoch"] == 3 and all(r["epochs_kept"] == 3 for r in rec["layers"])
    _, rec = finetune(str(path), str(tmp_path / "m.pt"), epochs=2, lr=0.5, checks=4, progress=False)
    for r in rec["layers"]:
        assert 0 <= r["epochs_kept"] <= 8 and r["mismatch_after"] <= r["mismatch_before"]
        assert (r["epochs_kept"] > 0) == (r["mismatch_after"] < r["mismatch_before"])
    with pytest.raises(FastSNNError, match="--checks"):
        finetune(str(path), str(tmp_path / "x.pt"), checks=0, progress=False)
