"""Training: a float ANN, then quantization-aware training of its b-bit twin.

1. The float ANN (conv/dense → BatchNorm → ReLU) trains with Adam and cross-entropy on
   ``x / input_max`` (normalised per channel when the dataset has mean/std, see
   :mod:`fastsnn_lava.normalize`; augmented when the dataset asks for it).
2. BatchNorm (and the input normalisation) are folded into the weights, each layer's clip α
   is calibrated on training data, and the :class:`~fastsnn_lava.models.QuantNet` trains on
   the integer grid the exporter writes (straight-through gradients). Its forward pass takes
   each level from the layer's exact integer accumulator, so ``qann_test_accuracy_float_forward``
   (this forward pass on the test set) equals the exported integer QANN's ``qann_test_accuracy``
   (the logits ``u·A/T`` keep the integer outputs' order and ties while ``|A| < 2^24``).

*Progressive precision* (``init``): the b-bit QANN starts from a trained QANN of the same
architecture and dataset (any bit width, typically b+1): step 1 is skipped and that
checkpoint's float ANN is kept. Its weights, biases and clips are copied; the clips are
re-calibrated when that lowers the loss on the calibration batch (``metrics["init_alpha"]``).

*Scale* (:mod:`fastsnn_lava.runtime`): under torchrun every process trains on its shard of
each epoch's batch order with DistributedDataParallel; ``batch_size`` is per process. Only
rank 0 shows progress bars and writes files. After every epoch rank 0 writes the resume file
(:mod:`fastsnn_lava.resume`); a run resumed from it repeats the uninterrupted run exactly
(same process count).

Both phases show a progress bar; ``seed`` makes a run reproducible on one machine. Both phases
run :func:`fit` (public: the benchmarks time it); the defaults are :class:`fastsnn_lava.options.TrainOptions`'s.

Run as ``python -m fastsnn_lava.train`` or ``torchrun --nproc_per_node=N -m fastsnn_lava.train``
with the options of ``fastsnn-train``.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .progress import bar as progress_bar
from . import resume
from .data import Dataset
from .data.augment import crop_flip
from .models import QuantNet, build_float
from .options import TrainOptions
from .runtime import Runtime

CALIB_SAMPLES = 2000


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def fit(model: nn.Module, prep: Callable, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
         batch_size: int, desc: str, seed: int, rt: Runtime, progress: bool, augment: bool = False,
         autocast: bool = False, state: dict | None = None, after_epoch: Callable | None = None,
         teacher: Callable | None = None, distill: float = 0.0) -> None:
    """Adam + cosine schedule for ``epochs`` epochs, from ``state`` (a resume dict) if given;
    ``after_epoch(epoch, optimizer, scheduler, generator)`` runs after each completed epoch.
    ``teacher`` (a function of the same batch) and ``distill`` = w: the loss is
    ``(1 − w)·CE(z, y) + w·KL(softmax(t) ‖ softmax(z))`` with t the teacher's logits (:func:`distill_loss`)."""
    gen = torch.Generator().manual_seed(seed)
    net = rt.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start = int(state["epoch"])
    loss_fn = nn.CrossEntropyLoss()
    per_epoch = math.ceil(len(rt.shard(torch.arange(len(x)))) / batch_size)
    with progress_bar(total=epochs * per_epoch, initial=min(start, epochs) * per_epoch, desc=desc, unit="batch",
              disable=not (progress and rt.main), leave=False) as bar:
        for epoch in range(start, epochs):
            model.train()
            perm = rt.shard(torch.randperm(len(x), generator=gen))
            for i in range(0, len(perm), batch_size):
                idx = perm[i:i + batch_size].to(x.device)
                xb = crop_flip(x[idx], gen) if augment else x[idx]
                with rt.autocast() if autocast else torch.autocast("cpu", enabled=False):
                    z = net(prep(xb)).float()
                    loss = loss_fn(z, y[idx]) if not distill else distill_loss(z, y[idx], teacher(xb), distill)
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            sched.step()
            rt.sync_buffers(model)
            if after_epoch is not None:
                after_epoch(epoch + 1, opt, sched, gen)
    model.eval()


def distill_loss(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor, w: float) -> torch.Tensor:
    """``(1 − w)·CE(z, y) + w·KL(softmax(t) ‖ softmax(z))``: the student's logits z learn the labels y and the
    teacher's output distribution (logits t, no gradient; Hinton et al. 2015 at temperature 1)."""
    kl = F.kl_div(F.log_softmax(z, 1), F.log_softmax(t.detach().float(), 1), log_target=True, reduction="batchmean")
    return (1 - w) * F.cross_entropy(z, y) + w * kl if w < 1 else kl


@torch.no_grad()
def accuracy(forward, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (forward(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


@torch.no_grad()
def _init_from_quant(qann: QuantNet, source: QuantNet, calib: torch.Tensor, calib_y: torch.Tensor) -> str:
    """Copy ``source``'s weights, biases and clips; re-calibrate the clips if that lowers the
    calibration loss at the new bit width. Returns "kept" or "recalibrated"."""
    qann.load_state_dict(source.state_dict())
    kept = F.cross_entropy(qann(calib), calib_y).item()
    saved = {k: v.clone() for k, v in qann.state_dict().items()}
    qann.calibrate(calib)
    if F.cross_entropy(qann(calib), calib_y).item() < kept:
        return "recalibrated"
    qann.load_state_dict(saved)
    return "kept"


_T = TrainOptions  # the defaults below: fastsnn-train's, written once in options.py


def train(ds: Dataset, spec: list[dict], bits: int, epochs: int = _T.epochs, qat_epochs: int = _T.qat_epochs,
          batch_size: int = _T.batch_size, lr: float = _T.lr, qat_lr: float = _T.qat_lr, seed: int = _T.seed,
          progress: bool = _T.progress, init: tuple | None = None, runtime: Runtime | None = None,
          resume_state: dict | None = None, resume_file: str | None = None, config: dict | None = None,
          on_epoch: Callable | None = None, model: nn.Module | None = None,
          distill: float = _T.distill) -> tuple[QuantNet, nn.Module, dict]:
    """Train the float ANN and the quantized ANN; returns (qann, float_net, metrics), on the CPU.

    ``model``: a float model the user wrote (:mod:`fastsnn_lava.user_model`) whose spec is ``spec``;
    the float phase trains it on ``x / input_max``, then :func:`fastsnn_lava.fx.convert` folds it into
    the project's float network (:func:`~fastsnn_lava.models.build_float` of ``spec``) for the QANN.
    ``init``: (QuantNet, float ANN, meta) of a trained checkpoint (progressive precision).
    ``resume_state``: a :func:`fastsnn_lava.resume.load` dict to continue from.
    ``resume_file``: where rank 0 writes the resume state after every epoch (with ``config``).
    ``on_epoch(phase, epoch)``: called on every rank after each completed epoch.
    ``distill``: weight of the float ANN's outputs in the QAT loss (knowledge distillation, :func:`distill_loss`).
    """
    rt = runtime or Runtime(torch.device("cpu"))
    set_seed(seed)
    t0 = time.time()
    dev = rt.device
    x, y = torch.as_tensor(ds.x_train).to(dev), torch.as_tensor(ds.y_train).to(dev)
    xt, yt = torch.as_tensor(ds.x_test).to(dev), torch.as_tensor(ds.y_test).to(dev)
    st = resume_state
    metrics = dict(st["metrics"]) if st else {}
    float_phase = init is None and (st is None or st["phase"] == "float")
    user_clips: list = []  # per hidden layer, the user model's own clip α (None: calibrated)
    if model is not None and float_phase:
        float_net = model.to(dev)  # trained as the user wrote it, folded after the float phase
    else:  # the user model's folded network (fx.convert) has no input normalisation: it sees x / input_max
        float_net = build_float(spec, ds.input_shape, ds.n_classes, ds.norm if model is None else None).to(dev)

    def float_forward(a):
        return float_net(a.float() / ds.input_max)

    def saver(phase: str, model_states: Callable):
        def after(epoch, opt, sched, gen):
            if resume_file and rt.main:
                fs, qs = model_states()
                resume.save(resume_file, config or {}, phase, epoch, fs, qs, opt.state_dict(), sched.state_dict(),
                            gen.get_state(), metrics)
            if on_epoch is not None:
                on_epoch(phase, epoch)
        return after

    if init is not None:
        float_net.load_state_dict(init[1].state_dict())
    elif float_phase:
        if st is not None:
            float_net.load_state_dict(st["float"])
        fit(float_net, lambda a: a.float() / ds.input_max, x, y, epochs, lr, batch_size, "float ANN", seed, rt,
             progress, ds.augment, autocast=True, state=st,
             after_epoch=saver("float", lambda: (float_net.state_dict(), None)))
        if model is not None:
            from .fx import convert
            converted = convert(model.cpu(), ds.input_shape)
            float_net, user_clips = converted.float_net.to(dev), converted.clips
    else:
        float_net.load_state_dict(st["float"])

    float_net.eval()
    qann = QuantNet(spec, ds.input_shape, ds.n_classes, bits, ds.input_max).to(dev)
    with rt.exact_float32():
        if st is not None and st["phase"] == "qat":
            qann.load_state_dict(st["qann"])
        else:
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:CALIB_SAMPLES].to(dev)
            calib = x[pick].float()
            if init is not None:
                metrics["init_alpha"] = _init_from_quant(qann, init[0].to(dev), calib, y[pick])
            else:
                qann.init_from_float(float_net, calib)
                from .fx_quant import set_user_clips
                set_user_clips(qann, user_clips)  # the clips α of the user's own activation quantizers
            metrics["qann_test_accuracy_after_calibration"] = accuracy(qann, xt.float(), yt)
            st = None
        fit(qann, lambda a: a.float(), x, y, qat_epochs, qat_lr, batch_size, f"QAT {bits}-bit", seed + 1, rt,
             progress, ds.augment, state=st, after_epoch=saver("qat", lambda: (float_net.state_dict(),
                                                                              qann.state_dict())),
             teacher=torch.no_grad()(float_forward), distill=distill)
        metrics["qann_test_accuracy_float_forward"] = accuracy(qann, xt.float(), yt)
    metrics["float_test_accuracy"] = accuracy(float_forward, xt, yt)
    if rt.distributed:
        metrics["world_size"] = rt.world
        metrics["ranks_identical"] = rt.same_on_all_ranks(float_net) and rt.same_on_all_ranks(qann)
    metrics["train_seconds"] = round(time.time() - t0, 2)
    return qann.cpu(), float_net.cpu(), metrics

