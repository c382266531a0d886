"""Whole-network ("tandem") fine-tuning (issue 4: deep networks)."""
import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.cli.finetune import main as finetune_cli
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.engine import Engine
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.netx import read_network
from fastsnn_lava.pipeline import convert, export, finetune
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward
from fastsnn_lava.engine import if_run
from fastsnn_lava.surrogate import if_bptt, step
from fastsnn_lava.tuning import heldout_count
from fastsnn_lava.tuning.distillation import DIVERGED, GO_ON, KEEP, RESTORE, Tuner, decide, kl, qann_logits, tandem


def assert_run_followed_the_rule(resnet8, tuned, rec: dict) -> None:
    """What a tandem run guarantees whatever its training did (the CPU's float sums, thread count):

    * at least one check was judged (the tests run a step large enough to move a code by the first check);
    * every check's verdict is :func:`decide`'s on the criteria recorded before it, and the kept count,
      the final KL and the changed codes follow from the verdicts;
    * the reported held-out KL of the returned network is its KL measured here, independently;
    * the network kept is the conversion exactly when nothing was kept.
    """
    t = rec["tandem"]
    h = t["history"]
    assert h[0]["decision"] == "start" and h[0]["kl"] == t["heldout_kl_before"] and len(h) >= 2
    best = start = h[0]["criterion"]
    kept, kl_after = 0, t["heldout_kl_before"]
    for check in h[1:]:
        assert check["decision"] == decide(check["criterion"], best, start, t["average"] > 0), check
        if check["decision"] == KEEP:
            best, kept, kl_after = check["criterion"], kept + 1, check["kl"]
    assert t["checks_kept"] == kept and t["heldout_kl_after"] == kl_after
    assert (t["codes_changed"] > 0) == (kept > 0)
    if not t["label_weight"]:  # the criterion is the KL itself: a kept check lowered it
        assert (kept > 0) == (t["heldout_kl_after"] < t["heldout_kl_before"])
    qann, _, _ = checkpoint.load(str(resnet8))
    net0 = to_network(qann)
    x = load_dataset("digits").x_train
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    held = torch.as_tensor(x[perm[:heldout_count(len(x))]])
    scale = Tuner(qann, net0).scale
    z_ref = qann_logits(net0, held, scale, torch.float64)
    z = scale * torch.as_tensor(Engine(tuned, device="cpu").run(held.numpy()), dtype=torch.float64)
    assert float(kl(z, z_ref, 1.0)) == pytest.approx(t["heldout_kl_after"], rel=1e-5, abs=1e-9)
    if t["label_weight"]:  # the criterion is KL + w·CE on the held-out labels (checked at the start)
        y = torch.as_tensor(load_dataset("digits").y_train[perm[:len(held)]]).long()
        z0 = scale * torch.as_tensor(Engine(net0, device="cpu").run(held.numpy()), dtype=torch.float64)
        want = float(kl(z0, z_ref, 1.0) + t["label_weight"] * torch.nn.functional.cross_entropy(z0, y))
        assert h[0]["criterion"] == pytest.approx(want, rel=1e-5)
    if not kept:
        assert all(a.equals(b) for a, b in zip(net0.layers, tuned.layers))


@pytest.mark.parametrize("averaging", [False, True])
def test_decide_keeps_exactly_what_lowers_the_criterion(averaging):
    """The acceptance rule on forced criteria: a check is kept exactly when it is below the best so far;
    without averaging anything else restores the kept codes; with averaging the run goes on unless the
    check is worse than the start, which is a divergence."""
    start, best = 1.0, 0.8
    assert decide(0.79, best, start, averaging) == KEEP
    assert decide(0.8, best, start, averaging) == (GO_ON if averaging else RESTORE)  # equal is not better
    assert decide(0.9, best, start, averaging) == (GO_ON if averaging else RESTORE)
    assert decide(1.0, best, start, averaging) == (GO_ON if averaging else RESTORE)
    assert decide(1.01, best, start, averaging) == (DIVERGED if averaging else RESTORE)
    assert decide(float("nan"), best, start, averaging) == (DIVERGED if averaging else RESTORE)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("theta,steps", [(2, 1), (6, 3), (64, 7), (1000, 15)])
def test_surrogate_if_spikes_equal_the_integer_neuron(signed, theta, steps):
    """Forward, the differentiable neuron is the IF neuron: the same spikes as the engine's integer
    loop on currents that drive it both ways (many −1 spikes for the signed neuron)."""
    gen = torch.Generator().manual_seed(theta + steps)
    cur = torch.randint(-2 * theta, 2 * theta, (steps, 4000), generator=gen).double().requires_grad_()
    s = if_bptt(cur, theta, signed)
    assert torch.equal(s.detach(), if_run(cur.detach().clone(), theta, signed, False, steps))
    if signed and steps > 1:
        assert (s.detach() < 0).any()
    s.sum().backward()
    assert cur.grad.abs().sum() > 0


@pytest.mark.parametrize("theta", [2, 8, 255])
def test_surrogate_derivative_is_a_unit_ramp_one_threshold_wide(theta):
    """h(x) = max(0, 1 − |x + ½|/θ)/θ: peak 1/θ between x = −1 and 0, zero from θ away, and over the
    integers it sums to exactly 1, one spike per θ of membrane (the QANN's k = A/θ)."""
    x = torch.arange(-3 * theta, 3 * theta, dtype=torch.float64, requires_grad=True)
    step(x, theta).sum().backward()
    h = x.grad
    assert h[x.detach() == 0] == h[x.detach() == -1] == pytest.approx(1 / theta - 0.5 / theta ** 2)
    assert (h[(x.detach() >= theta) | (x.detach() <= -theta - 1)] == 0).all()
    assert float(h.sum()) == pytest.approx(1.0, abs=1e-12)

@pytest.mark.parametrize("gradient", ["bptt", "qann"])
def test_tandem_forward_value_is_the_snn_and_gradient_reaches_every_tuned_layer(resnet8, gradient):
    """The value of the tuner's logits is the integer SNN's output (exactly, engine = reference), its
    QANN twin is the reference QANN's, and the loss reaches W and b of every hidden layer 2..L−1."""
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    x = torch.as_tensor(load_dataset("digits").x_test[:64])
    tuner = Tuner(qann, net, gradient)
    z = tuner.forward(x)
    out = Engine(net).run(x.numpy())
    assert np.array_equal(out, run_batches(net, x.numpy(), snn_forward))
    assert torch.equal(torch.round(z.detach().double() / tuner.scale), torch.as_tensor(out, dtype=torch.float64))
    ref = qann_logits(net, x, tuner.scale, torch.float64)
    assert torch.equal(torch.round(ref / tuner.scale), qann_forward(net, x.numpy()).out)
    z.logsumexp(1).sum().backward()
    assert len(tuner.w) == len(net.layers) - 2
    for w, b in zip(tuner.w, tuner.b):
        assert w.grad is not None and w.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


@pytest.mark.parametrize("gradient", ["bptt", "qann"])
def test_tandem_follows_its_acceptance_rule_keeps_the_grid_and_exports_losslessly(resnet8, tmp_path, gradient):
    dst = tmp_path / "r8_tandem.pt"
    # lr 1: the first step moves a typical code by one (gradients are scaled by their RMS), so the first
    # check has a candidate to judge; whether a check is kept is the training's business, not the test's
    net, rec = finetune(str(resnet8), str(dst), method="tandem", epochs=2, checks=4, progress=False,
                        gradient=gradient, lr=1.0)
    t = rec["tandem"]
    assert rec["method"] == "tandem" and t["checks_per_epoch"] == 4
    assert rec["gradient"] == t["gradient"] == gradient
    assert_run_followed_the_rule(resnet8, net, rec)
    before = convert(str(resnet8))
    for i, (a, b) in enumerate(zip(before.layers, net.layers)):
        assert a.threshold == b.threshold and all(sa.equals(sb) for sa, sb in zip(a.skips, b.skips))
        if i in (0, len(net.layers) - 1):  # first layer and classifier are never tuned
            assert a.equals(b)
        assert np.abs(b.weight).max() <= 127 and np.abs(b.bias).max() <= 4095
    assert sum(int((a.weight != b.weight).sum() + (a.bias != b.bias).sum())
               for a, b in zip(before.layers, net.layers)) == t["codes_changed"]
    exported = export(str(dst), str(tmp_path / "r8_tandem.h5"))
    assert read_network(tmp_path / "r8_tandem.h5").equals(net) and exported.equals(net)
    ds = load_dataset("digits")
    assert float((Engine(net).run(ds.x_test).argmax(1) == ds.y_test).mean()) == rec["snn_test_accuracy"]


@pytest.mark.parametrize("average", [0.0, 0.5])
@pytest.mark.parametrize("schedule", ["halve", "cosine"])
def test_tandem_rejects_every_check_restores_the_conversion(resnet8, schedule, average):
    """A learning rate so large that every step ruins the network: nothing is kept, the codes are the
    conversion's (also when the judged codes are the masters' average, which the step ruins too)."""
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    tuned, rep = tandem(qann, net, load_dataset("digits").x_train, lr=1e6, checks=2, max_samples=256,
                        progress=False, schedule=schedule, average=average)
    assert rep.average == average
    assert rep.checks_kept == 0 and rep.codes_changed == 0 and rep.heldout_kl_after == rep.heldout_kl_before
    if schedule == "halve":
        assert rep.final_lr == 1e6 / 4  # each rejected check halves the step
    elif not average:  # two batches: the last step's lr is lr·½(1 + cos(π/2)), whatever was rejected
        assert rep.final_lr == pytest.approx(1e6 / 2)
    else:  # averaging: a check worse than the start is a divergence, which halves the cosine's lr too
        assert rep.final_lr == pytest.approx(1e6 / 2 / 2)
    assert all(a.equals(b) for a, b in zip(net.layers, tuned.layers))


def test_tandem_refuses_bad_settings(resnet8, tmp_path, capsys):
    qann, _, _ = checkpoint.load(str(resnet8))
    with pytest.raises(FastSNNError, match="signed"):
        tandem(qann, to_network(qann, "unsigned_if"), load_dataset("digits").x_train, progress=False)
    with pytest.raises(FastSNNError, match="--schedule"):
        tandem(qann, to_network(qann), load_dataset("digits").x_train, progress=False, schedule="step")
    with pytest.raises(FastSNNError, match="--gradient"):
        tandem(qann, to_network(qann), load_dataset("digits").x_train, progress=False, gradient="adjoint")
    with pytest.raises(FastSNNError, match="labels"):
        tandem(qann, to_network(qann), load_dataset("digits").x_train, progress=False, label_weight=0.5)
    with pytest.raises(FastSNNError, match="--average"):
        tandem(qann, to_network(qann), load_dataset("digits").x_train, progress=False, average=1.0)
    with pytest.raises(FastSNNError, match="--method"):
        finetune(str(resnet8), str(tmp_path / "x.pt"), method="global", progress=False)
    with pytest.raises(SystemExit) as e:  # refused while parsing the flags
        finetune_cli([str(resnet8), "--method", "tandem", "--checks", "0", "-o", str(tmp_path / "y.pt")])
    assert e.value.code == 2
    assert "--checks" in capsys.readouterr().err and not (tmp_path / "y.pt").exists()


def test_tandem_label_term_is_recorded_and_still_exports_losslessly(resnet8, tmp_path):
    """``--labels W``: KL + W·CE(z, y) drives the steps and the acceptance; the grid stays, the export is exact."""
    dst = tmp_path / "r8_labels.pt"
    net, rec = finetune(str(resnet8), str(dst), method="tandem", epochs=2, checks=2, progress=False,
                        schedule="cosine", label_weight=0.5, lr=1.0)
    assert rec["rule"] == "heldout_kl+labels" and rec["label_weight"] == 0.5 and rec["schedule"] == "cosine"
    assert rec["tandem"]["label_weight"] == 0.5
    assert_run_followed_the_rule(resnet8, net, rec)
    assert all(c["criterion"] >= c["kl"] for c in rec["tandem"]["history"])  # KL + ½·CE, CE ≥ 0
    before = convert(str(resnet8))
    assert all(a.threshold == b.threshold for a, b in zip(before.layers, net.layers))
    export(str(dst), str(tmp_path / "r8_labels.h5"))
    assert read_network(tmp_path / "r8_labels.h5").equals(net)


def test_tandem_classifier_option_tunes_the_readout_and_still_exports_losslessly(resnet8, tmp_path):
    """``--classifier``: the classifier's codes get masters too (the gradient reaches them, no surrogate),
    move within the code limits, and the tuned network still exports exactly; the first layer never moves."""
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    x = torch.as_tensor(load_dataset("digits").x_test[:64])
    tuner = Tuner(qann, net, "bptt", classifier=True)
    z = tuner.forward(x)
    assert torch.equal(torch.round(z.detach().double() / tuner.scale),
                       torch.as_tensor(Engine(net).run(x.numpy()), dtype=torch.float64))
    z.logsumexp(1).sum().backward()
    assert len(tuner.w) == len(net.layers) - 1 and tuner.w[-1].grad.abs().sum() > 0 and tuner.b[-1].grad.abs().sum() > 0
    with torch.no_grad():  # one step of a code per RMS of gradient: the largest moves by ≥ 1 and its code changes
        g = tuner.w[-1].grad
        tuner.w[-1] -= g / g.pow(2).mean().sqrt()
    moved = tuner.network()
    assert (moved.layers[-1].weight != net.layers[-1].weight).any()  # the classifier's masters are its codes
    dst = tmp_path / "r8_cls.pt"
    tuned, rec = finetune(str(resnet8), str(dst), method="tandem", epochs=2, checks=2, progress=False,
                          classifier=True, lr=1.0)
    assert rec["classifier"] is True and rec["tandem"]["classifier"] is True
    assert_run_followed_the_rule(resnet8, tuned, rec)
    first, last = (net.layers[0], tuned.layers[0]), (net.layers[-1], tuned.layers[-1])
    assert first[0].equals(first[1])
    assert np.abs(last[1].weight).max() <= 127 and np.abs(last[1].bias).max() <= 4095
    export(str(dst), str(tmp_path / "r8_cls.h5"))
    assert read_network(tmp_path / "r8_cls.h5").equals(tuned)


def test_tandem_average_judges_the_rounded_moving_average_and_still_exports_losslessly(resnet8, tmp_path):
    """``--average D``: the candidate networks are the codes of the masters' EMA, ``round(q̄)``; a run with it
    is recorded, keeps checks that lower the held-out KL, and the tuned network still exports exactly."""
    qann, _, _ = checkpoint.load(str(resnet8))
    net = to_network(qann)
    tuner = Tuner(qann, net, "bptt")
    for shift, moved in ((0.4, 0), (0.6, 1)):  # a state 0.4 codes above the masters rounds back; 0.6 rounds up
        cand = tuner.network([p.detach() + shift for p in tuner.params()])
        for a, b in zip(net.layers[1:-1], cand.layers[1:-1]):
            assert np.array_equal(b.weight, np.minimum(a.weight + moved, 127))
            assert np.array_equal(b.bias, np.minimum(a.bias + moved, 4095))
    assert all(a.equals(b) for a, b in zip(net.layers, tuner.network().layers))  # no state: the masters' codes
    dst = tmp_path / "r8_avg.pt"
    tuned, rec = finetune(str(resnet8), str(dst), method="tandem", epochs=2, checks=4, progress=False,
                          lr=1.0, average=0.5)
    t = rec["tandem"]
    assert rec["average"] == t["average"] == 0.5
    assert_run_followed_the_rule(resnet8, tuned, rec)
    export(str(dst), str(tmp_path / "r8_avg.h5"))
    assert read_network(tmp_path / "r8_avg.h5").equals(tuned)
