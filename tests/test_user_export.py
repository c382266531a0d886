"""``fastsnn-export --model FILE.py:FUNCTION --dataset NAME``: a user's own model straight to an integer SNN
file (no training), its agreement with the exported QANN printed, every careless input one line, exit 2,
nothing written; ``--hw none`` refuses nothing but reports each target's broken limits (issue 29)."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint, user_model
from fastsnn_lava.cli import export, run
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import balanced_subset, load_dataset
from fastsnn_lava.fx_quant import agreement
from fastsnn_lava.hardware import check_network, limits_report, load_target, violations
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import Accumulator, SignedIF
from fastsnn_lava.netx import read_network

MY_NET = str(Path(__file__).resolve().parent / "models" / "my_net.py")
AGREEMENT = re.compile(r"on (\d+) calibration images of digits: top-1 agreement ([0-9.]+), max \|Δlogit\| (\S+)")
WIDE = """import torch.nn as nn


def wide():
    # digits' 64 pixels -> 8192 hidden neurons -> 10 classes: the classifier's neurons read 8192 inputs each
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8192), nn.ReLU(), nn.Linear(8192, 10))


def pooled():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
"""


def _run(*argv) -> int:
    return run.main([str(a) for a in argv])


def _export(capsys, *argv) -> tuple[int, str, str]:
    rc = export.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """my_net.build(width=4) trained as its user would (four float epochs of Adam on digits): its state_dict."""
    torch.manual_seed(0)
    model = user_model.load_model(f"{MY_NET}:build", {"width": 4})
    ds = load_dataset("digits")
    x, y = torch.as_tensor(ds.x_train).float() / ds.input_max, torch.as_tensor(ds.y_train).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(4):
        for idx in torch.randperm(len(x), generator=torch.Generator().manual_seed(1)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("weights") / "my_net_state.pt"
    torch.save(model.state_dict(), path)
    return path


def test_a_user_model_exports_without_training_and_runs(tmp_path, capsys):
    h5, rec = tmp_path / "net.h5", tmp_path / "ref.json"
    rc, out, err = _export(capsys, "--model", f"{MY_NET}:build", "--dataset", "digits", "-o", h5)
    assert rc == 0 and err == "" and h5.is_file()
    n, top1, diff = AGREEMENT.search(out).groups()
    assert int(n) == 256 and 0 <= float(top1) <= 1 and float(diff) >= 0
    assert "3 layers, signed IF, b = 2, T = 3 -> " in out
    assert _run(h5, "--dataset", "digits", "--backend", "reference", "--samples", "20", "--json", rec,
              "--no-progress") == 0
    assert json.loads(rec.read_text())["samples"] == 20


def test_trained_weights_export_exactly_and_lava_equals_the_reference(weights, tmp_path, capsys, require_lava):
    h5, ck, rec = tmp_path / "net.h5", tmp_path / "model.pt", tmp_path / "lava.json"
    rc, out, err = _export(capsys, "--model", f"{MY_NET}:build", "--model-args", '{"width": 4}', "--weights",
                           weights, "--dataset", "digits", "--bits", "4", "--samples", "120", "--seed", "3",
                           "--save-checkpoint", ck, "-o", h5)
    assert rc == 0, err
    qann, _, meta = checkpoint.load(ck)
    assert read_network(h5).equals(to_network(qann))  # the file holds the converted QANN's integers, nothing else
    assert meta["bits"] == 4 and meta["dataset"] == "digits" and meta["calibration_samples"] == 120
    # the printed agreement is the model's and that QANN's on the seeded class-balanced subset
    model = user_model.load_model(f"{MY_NET}:build", {"width": 4})
    model.load_state_dict(torch.load(weights, weights_only=True))
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_train[balanced_subset(ds.y_train, 120, 3)]).float()
    stats = dict(agreement(model, qann, x, ds.input_max), samples=120, ties=0.0)
    n, top1, diff = AGREEMENT.search(out).groups()
    assert (int(n), float(top1)) == (120, round(stats["top1_agreement"], 4)) and stats == meta["agreement"]
    assert stats["top1_agreement"] >= 0.5 and stats["max_abs_logit_diff"] > 0  # re-quantized, and said so
    assert _run(h5, "--dataset", "digits", "--backend", "lava-sim", "--samples", "4", "--json", rec,
              "--no-progress") == 0
    r = json.loads(rec.read_text())
    assert r["samples"] == 4 and r["reference_agreement"] == 1.0 and r["first_difference"] is None


def test_hw_none_reports_every_targets_broken_limits_and_writes(tmp_path, capsys):
    (tmp_path / "wide.py").write_text(WIDE)
    h5 = tmp_path / "net.h5"
    model = ["--model", f"{tmp_path / 'wide.py'}:wide", "--dataset", "digits", "-o", h5]
    rc, out, err = _export(capsys, *model, "--hw", "loihi2")
    assert rc == 2 and not h5.exists()
    assert err.count("\n") == 1 and "layer 2 (dense, 10 neurons): a core needs 8192 distinct inputs" in err
    rc, out, err = _export(capsys, *model, "--hw", "none")
    assert rc == 0 and h5.is_file() and err == ""
    lines = dict(line.strip().split(": ", 1) for line in out.splitlines() if line.startswith("  "))
    assert set(lines) == {"loihi1", "loihi2", "cmos45nm"}
    assert "layer 2 fan-in 8192 > 4096 inputs per core" in lines["loihi2"]
    assert lines["cmos45nm"].startswith("no integer limits")
    net = read_network(h5)
    found = violations(net, load_target("loihi2"))
    with pytest.raises(Exception) as refused:
        check_network(net, load_target("loihi2"))
    assert str(refused.value) == found[0].message  # the refusal is the first violation, word for word
    assert limits_report(net, ["loihi2"]) == ["loihi2: " + lines["loihi2"]]


def _dense(n_in: int) -> Network:
    """n_in inputs → 16 signed IF neurons → 2 outputs (all weights 1)."""
    return Network((n_in,), [Layer("dense", np.ones((16, n_in)), np.zeros(16), SignedIF(2 ** 16), (n_in,), (16,)),
                             Layer("dense", np.ones((2, 16)), np.zeros(2), Accumulator(), (16,), (2,))],
                   bits=2, input_max=1)


def test_a_network_that_fits_reads_fits_and_each_violation_is_listed():
    assert limits_report(_dense(64), ["loihi2"]) == ["loihi2: fits"]
    big = _dense(5000)
    big.layers[1].weight[0, 0] = 300
    v = violations(big, load_target("loihi2"))
    assert [(x.layer, x.quantity, x.value, x.limit) for x in v] == [(2, "weight code", 300, 127),
                                                                  (1, "fan-in", 5000, 4096)]
    assert [x.short() for x in v] == ["layer 2 weight code 300 > 127", "layer 1 fan-in 5000 > 4096 inputs per core"]


@pytest.mark.parametrize("case", ["both", "neither", "weights without model", "args without model", "bad json",
                                  "output is the model file", "refused model", "no dataset", "missing file",
                                  "weights do not fit", "wrong bits"])
def test_careless_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys, weights):
    (tmp_path / "wide.py").write_text(WIDE)
    mine = tmp_path / "my_net.py"
    shutil.copy(MY_NET, mine)
    before = mine.read_bytes()
    out = tmp_path / "net.h5"
    model = ["--model", f"{mine}:build", "--dataset", "digits"]
    argv = {"both": [weights, *model, "-o", out],
            "neither": ["-o", out],
            "weights without model": [weights, "--weights", weights, "-o", out],
            "args without model": [weights, "--model-args", "{}", "-o", out],
            "bad json": [*model, "--model-args", "{width: 4", "-o", out],
            "output is the model file": [*model, "-o", mine],
            "refused model": ["--model", f"{tmp_path / 'wide.py'}:pooled", "--dataset", "digits", "-o", out],
            "no dataset": ["--model", f"{mine}:build", "-o", out],
            "missing file": ["--model", f"{tmp_path / 'nowhere.py'}:build", "--dataset", "digits", "-o", out],
            "weights do not fit": [*model, "--weights", weights, "-o", out],  # width 8, weights of width 4
            "wrong bits": [*model, "--bits", "9", "-o", out]}[case]
    rc, stdout, err = _export(capsys, *argv)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("fastsnn-export: error: "), err
    assert not out.exists() and mine.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_net.py", "wide.py"]


def test_the_api_takes_a_module_and_logs(tmp_path):
    from fastsnn_lava.pipeline import export as export_fn
    lines = []
    net = export_fn(None, str(tmp_path / "net.h5"), model=user_model.load_model(f"{MY_NET}:build", {"width": 2}),
                    dataset="digits", samples=30, hw="none", log=lines.append)
    assert "MyNet and its 2-bit QANN" in lines[0] and "on 30 calibration images" in lines[0]
    assert any(line.startswith("--hw none") for line in lines) and "  loihi2: fits" in lines
    assert np.array_equal(read_network(tmp_path / "net.h5").layers[0].weight, net.layers[0].weight)


def test_bias_codes_the_grid_clips_are_reported(tmp_path):
    """A bias far beyond what the layer's unit u = α/θ can hold (θ ≤ θ_max) is clipped to the target's bias range:
    the export says which layer and how many codes, instead of only a lower agreement."""
    from fastsnn_lava.pipeline import export as export_fn
    from fastsnn_lava.user_export import clipped_biases
    model = user_model.load_model(f"{MY_NET}:build", {"width": 2})
    lines = []
    export_fn(None, str(tmp_path / "a.h5"), model=model, dataset="digits", samples=30, hw="none", log=lines.append)
    ds = load_dataset("digits")
    x = torch.as_tensor(ds.x_train[balanced_subset(ds.y_train, 30, 0)]).float()
    from fastsnn_lava.fx import quantize
    before = clipped_biases(quantize(model, tuple(ds.input_shape), 2, ds.input_max, x)[0])
    assert [line for line in lines if "bias codes clip" in line] == [
        f"layer {k}: {n} of {total} bias codes clip at the target's bias range (largest |b/u| = {worst:.0f}, unit u "
        "of the layer's grid): the exported QANN differs from the model there" for k, n, total, worst in before]
    assert 1 not in [k for k, *_ in before]
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first.weight[0] = 0.0
        first.bias = torch.nn.Parameter(torch.zeros(first.out_channels))
        first.bias[0] = 1e6  # a channel that is always on: far more than its calibrated clip α, on any grid
    after = clipped_biases(quantize(model, tuple(ds.input_shape), 2, ds.input_max, x)[0])
    assert after[0][:2] == (1, 1) and after[0][3] > 4095
