"""Knowledge distillation in QAT (``fastsnn-train --distill W``, issue 24): the QANN learns the labels and the
float ANN's output distribution, ``(1 − W)·CE + W·KL(float ‖ QANN)``."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from fastsnn_lava import checkpoint
from fastsnn_lava.pipeline import train
from fastsnn_lava.training import distill_loss


def test_distill_loss_is_cross_entropy_at_zero_and_kl_at_one():
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    assert torch.equal(distill_loss(z, y, t, 0.0), F.cross_entropy(z, y))
    kl = (F.softmax(t, 1) * (F.log_softmax(t, 1) - F.log_softmax(z, 1))).sum(1).mean()
    assert torch.allclose(distill_loss(z, y, t, 1.0), kl, atol=1e-6)
    assert distill_loss(t, y, t, 1.0).abs().item() < 1e-6  # the teacher's own logits: nothing to learn
    mix = distill_loss(z, y, t, 0.3)
    assert torch.allclose(mix, 0.7 * F.cross_entropy(z, y) + 0.3 * kl, atol=1e-6)


def test_distill_gradient_moves_the_student_towards_the_teacher():
    t = torch.tensor([[3.0, 0.0, -1.0]])
    z = torch.zeros(1, 3, requires_grad=True)
    distill_loss(z, torch.tensor([2]), t, 1.0).backward()  # the label disagrees: with W = 1 it is ignored
    assert z.grad[0, 0] < 0 < z.grad[0, 2]  # descent raises logit 0 and lowers logit 2, like the teacher
    t.requires_grad_(True)
    distill_loss(z.detach().requires_grad_(True), torch.tensor([2]), t, 1.0).backward()
    assert t.grad is None  # the teacher is not trained


def test_distillation_changes_qat_and_is_recorded(tmp_path):
    kw = dict(dataset="digits", arch="mlp", bits=2, epochs=1, qat_epochs=1, seed=2, progress=False, threads=1)
    q0, _, m0 = train(out=str(tmp_path / "a.pt"), **kw)
    q1, _, m1 = train(out=str(tmp_path / "b.pt"), distill=0.7, **kw)
    assert m0["distill"] == 0.0 and m1["distill"] == 0.7
    assert checkpoint.load(str(tmp_path / "b.pt"))[2]["distill"] == 0.7
    assert any(not torch.equal(a, b) for a, b in zip(q0.state_dict().values(), q1.state_dict().values()))


class _Stop(Exception):
    pass


def test_resumed_distilled_run_repeats_the_uninterrupted_one(tmp_path):
    kw = dict(dataset="digits", arch="mlp", bits=2, epochs=1, qat_epochs=2, seed=3, progress=False, threads=1,
              distill=0.5)
    qa, _, _ = train(out=str(tmp_path / "a.pt"), **kw)

    def stop(phase, epoch):
        if (phase, epoch) == ("qat", 1):
            raise _Stop
    with pytest.raises(_Stop):
        train(out=str(tmp_path / "b.pt"), on_epoch=stop, **kw)
    qb, _, meta = train(out=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt.resume"), **dict(kw, distill=0.0))
    assert meta["distill"] == 0.5  # the resume file's setting wins
    assert all(torch.equal(qa.state_dict()[k], qb.state_dict()[k]) for k in qa.state_dict())


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_distill_outside_zero_one_is_a_one_line_error(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "fastsnn_lava.cli.train", "--distill", value, "-o",
                        str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--distill" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "m.pt").exists()
