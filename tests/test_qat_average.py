"""Weight averaging in QAT (``fastsnn-train --average D``, issue 24): the saved QANN is the exponential moving
average of its float masters and clips, ``p̄ ← D·p̄ + (1 − D)·p`` after every optimizer step."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from fastsnn_lava import checkpoint
from fastsnn_lava.pipeline import train
from fastsnn_lava.runtime import Runtime
from fastsnn_lava.training import fit, use_average


def test_fit_average_is_the_moving_average_of_the_parameters_after_every_step():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    seen = []  # the parameters each forward pass sees: those after the step before it
    model.register_forward_pre_hook(lambda m, a: seen.append([p.detach().clone() for p in m.parameters()]))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    decay = 0.8
    avg = fit(model, lambda a: a, x, y, 2, 0.05, 8, "t", 0, Runtime(torch.device("cpu")), False, average=decay)
    trajectory = seen[1:] + [[p.detach().clone() for p in model.parameters()]]  # after steps 1..n
    assert len(trajectory) == 10  # 2 epochs × 5 batches
    expect = trajectory[0]  # the first step copies
    for params in trajectory[1:]:
        expect = [decay * e + (1 - decay) * p for e, p in zip(expect, params)]
    for e, q, p in zip(expect, avg.module.parameters(), model.parameters()):
        assert torch.allclose(q, e, atol=1e-6)
        assert not torch.equal(q, p)  # the model keeps its last parameters until use_average
    use_average(model, avg)
    assert all(torch.equal(q, p) for q, p in zip(avg.module.parameters(), model.parameters()))
    assert fit(nn.Linear(4, 3), lambda a: a, x, y, 1, 0.05, 8, "t", 0, Runtime(torch.device("cpu")), False) is None


KW = dict(dataset="digits", arch="mlp", bits=2, epochs=1, qat_epochs=2, seed=4, progress=False, threads=1)


def test_averaged_qat_trains_the_same_trajectory_and_saves_its_average(tmp_path):
    q0, _, m0 = train(out=str(tmp_path / "a.pt"), **KW)
    q1, _, m1 = train(out=str(tmp_path / "b.pt"), average=0.9, **KW)
    assert "average" not in m0 and m1["average"] == 0.9 and checkpoint.load(str(tmp_path / "b.pt"))[2]["average"] == 0.9
    # averaging only watches the run: its last parameters are the plain run's, to the sample
    assert m1["qann_test_accuracy_float_forward_unaveraged"] == m0["qann_test_accuracy_float_forward"]
    assert any(not torch.equal(a, b) for a, b in zip(q0.state_dict().values(), q1.state_dict().values()))
    # the averaged QANN is on the same integer grid: the exported integers compute what it computes
    assert m1["qann_test_accuracy"] == m1["qann_test_accuracy_float_forward"]


class _Stop(Exception):
    pass


def test_resumed_averaged_run_repeats_the_uninterrupted_one(tmp_path):
    qa, _, _ = train(out=str(tmp_path / "a.pt"), average=0.9, **KW)

    def stop(phase, epoch):
        if (phase, epoch) == ("qat", 1):
            raise _Stop
    with pytest.raises(_Stop):
        train(out=str(tmp_path / "b.pt"), on_epoch=stop, average=0.9, **KW)
    qb, _, meta = train(out=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt.resume"), **KW)
    assert meta["average"] == 0.9  # the resume file's setting wins
    assert all(torch.equal(qa.state_dict()[k], qb.state_dict()[k]) for k in qa.state_dict())


@pytest.mark.parametrize("value", ["1", "-0.1", "x"])
def test_average_outside_zero_one_is_a_one_line_error(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.train", "--average", value, "-o",
                        str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--average" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "m.pt").exists()
