"""Train the CIFAR-10 models of the README's CIFAR-10 tables (issue 24), one stage at a time, resumably.

Stages, each one ``fastsnn-train`` run writing ``<out>/cifar10_<net>_<stage>.pt`` (``--dataset fashion-mnist``:
the same recipe on Fashion-MNIST, ``<out>/fashion_<net>_<stage>.pt``, for the README's Fashion-MNIST row of it):

1. ``float``: the float ANN (``--float-epochs``; random crops and flips), saved with its calibrated
   QANN at the last bit width and no QAT;
2. one stage per bit width in ``--bits`` (e.g. ``3,2``): QAT started from the previous stage
   (``--init``: progressive precision), ``--qat-epochs`` epochs at ``--qat-lr`` (Adam, cosine), the
   float ANN distilled into the QANN with weight ``--distill`` (``fastsnn-train --distill``); each of
   the three takes one value or one per stage. A bit width may repeat (``3,2,2``: a second 2-bit
   stage continues the first, e.g. longer and distilled harder); the last stage of a bit width writes
   ``<prefix>_<net>_b<b>.pt``, an earlier one ``<prefix>_<net>_b<b>_stage<i>.pt`` (i counts from 1).

A finished stage is skipped; an interrupted one continues from its ``.resume`` file, so the same
command run again (in a later session) picks up where the last one stopped; a stage on disk trained with
other settings than the command's (epochs, learning rate, distillation, bit width, the stage it started
from, seed, batch size) is refused (exit 2) rather than taken for this one. ``--net resnet20`` is
the CIFAR ResNet-20 of ``benchmarks/models/cifar_resnet.py`` (option-A shortcuts, raw-zero padding
of the input, ImageNet normalisation in forward); ``--published FILE`` starts its float stage from a
published state dict (akamaster/pytorch_resnet_cifar10's ``resnet20-12fca82f.th``). Other nets
are ``fastsnn-train --arch`` presets (``cnn5``, ``resnet8``, ``resnet8w``, ``vgg11``), trained from scratch. The data comes
from ``$FASTSNN_CIFAR10`` (the JPEG archive, ``fastsnn_lava.data``). Equivalent commands::

    fastsnn-train --dataset cifar10 --model benchmarks/models/cifar_resnet.py:resnet \\
        --model-args '{"depth": 20, "published": "resnet20-12fca82f.th"}' --epochs 3 --qat-epochs 0 \\
        --lr 0.0003 --bits 2 --batch-size 128 --threads 2 -o cifar10_resnet20_float.pt
    fastsnn-train --dataset cifar10 --model benchmarks/models/cifar_resnet.py:resnet --model-args ... \\
        --init cifar10_resnet20_float.pt --bits 3 --qat-epochs 3 --distill 0.5 ... -o cifar10_resnet20_b3.pt

Usage: .venv/bin/python scripts/train_cifar10.py --net resnet20 --published resnet20-12fca82f.th \\
           [--float-epochs 3] [--lr 0.0003] [--bits 3,2] [--qat-epochs 3] [--distill 0.5] [--out build/models]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fastsnn_lava.pipeline import train  # noqa: E402

PREFIX = {"cifar10": "cifar10", "fashion-mnist": "fashion"}  # dataset: its checkpoints' file prefix
RESNET = "benchmarks/models/cifar_resnet.py:resnet"  # relative to the repository root (the script runs there)


SETTINGS = ("dataset", "bits", "seed", "batch_size", "epochs", "qat_epochs", "lr", "qat_lr", "distill", "init")


def check_settings(path: Path, recorded: dict, asked: dict) -> None:
    """Refuse a stage on disk trained with other settings than ``asked`` (the keys of ``SETTINGS`` it records;
    ``init`` by file name, as a checkpoint's ``init_from``). Without it, a changed chain (``--bits 3,2,2`` →
    ``3,2,2,2``) would silently take the old third stage's ``_b2.pt`` for its fourth."""
    def name(path):
        return None if path is None else Path(path).name

    for key in SETTINGS:
        if key not in asked or (key == "bits" and asked.get("qat_epochs") == 0):
            continue  # not asked; or the float stage, whose bit width only sets its unused QANN
        if key == "init":
            have, want = name(recorded.get("init_from", recorded.get("init"))), name(asked[key])
        elif key in recorded:  # older checkpoints lack some keys: not held against them
            have, want = recorded[key], asked[key]
        else:
            continue
        if have != want:
            refuse(f"{path} was trained with {key} {have}, this command asks for {want}: move it aside "
                   f"(or give another --out) to train this stage again")


def stage(out: Path, resume: Path, **kw) -> dict:
    """One ``pipeline.train`` run: skipped when ``out`` exists, continued when its resume file does, either only
    when it was trained with the settings asked for (:func:`check_settings`)."""
    from fastsnn_lava import resume as resume_file
    from fastsnn_lava.checkpoint import load
    if out.exists():
        meta = load(str(out))[2]
        check_settings(out, meta, kw)
        return meta
    if resume.exists():
        check_settings(resume, resume_file.load(str(resume))["config"], kw)
        return train(out=str(out), resume=str(resume), model=kw.get("model"), progress=True)[2]
    return train(out=str(out), progress=True, **kw)[2]


def refuse(message: str) -> None:
    """A bad option: one line on stderr, exit 2 (nothing trained or written)."""
    print(f"train_cifar10.py: {message}", file=sys.stderr)
    sys.exit(2)


def per_stage(value: str, kind: type, stages: int, flag: str) -> list:
    """``value``: one number for every stage or a comma list with one per stage."""
    try:
        items = [kind(v) for v in value.split(",")]
    except ValueError:
        refuse(f"{flag} {value!r}: give numbers separated by commas")
    if len(items) not in (1, stages):
        refuse(f"{flag} has {len(items)} values for {stages} stages: give one or one per --bits")
    return items * stages if len(items) == 1 else items


def chain():
    from fastsnn_lava.heap import keep_freed_memory
    keep_freed_memory()  # freed tensors are reused, not faulted in again (fastsnn_lava/heap.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10", choices=sorted(PREFIX),
                    help="cifar10 (default) or fashion-mnist: the same recipe for the Fashion-MNIST tables")
    ap.add_argument("--net", default="resnet20", help="resnet20 (benchmarks/models/cifar_resnet.py) or an --arch "
                    "preset (cnn5, resnet8, resnet8w, vgg11)")
    ap.add_argument("--published", default=None, help="resnet20: start from this published state dict")
    ap.add_argument("--float-epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4, help="float learning rate (Adam, cosine)")
    ap.add_argument("--bits", default="3,2", help="QAT bit widths in order (progressive precision)")
    ap.add_argument("--qat-epochs", default="3", help="QAT epochs, one number or one per bit width")
    ap.add_argument("--qat-lr", default="0.0005", help="QAT learning rate, one or one per bit width")
    ap.add_argument("--distill", default="0.5", help="distillation weight, one or one per bit width")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="build/models")
    a = ap.parse_args()
    os.chdir(ROOT)
    bits = [int(b) for b in a.bits.split(",")]
    qat, qat_lr, distill = (per_stage(value, kind, len(bits), flag) for value, kind, flag in (
        (a.qat_epochs, int, "--qat-epochs"), (a.qat_lr, float, "--qat-lr"), (a.distill, float, "--distill")))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.net == "resnet20":
        net = dict(model=RESNET, model_args=json.dumps({"depth": 20, "published": a.published}))
    else:
        net = dict(arch=a.net)
    pre = PREFIX[a.dataset]
    common = dict(dataset=a.dataset, batch_size=a.batch_size, seed=a.seed, threads=a.threads, **net)
    prev = out / f"{pre}_{a.net}_float.pt"
    meta = stage(prev, Path(str(prev) + ".resume"), bits=bits[-1], epochs=a.float_epochs, qat_epochs=0, lr=a.lr,
                 **common)
    print(json.dumps({"stage": "float", "float": meta["float_test_accuracy"], "seconds": meta["train_seconds"]}),
          flush=True)
    for i, (b, epochs) in enumerate(zip(bits, qat)):
        last = b not in bits[i + 1:]  # the last stage of this bit width writes the table's file
        path = out / (f"{pre}_{a.net}_b{b}.pt" if last else f"{pre}_{a.net}_b{b}_stage{i + 1}.pt")
        meta = stage(path, Path(str(path) + ".resume"), bits=b, init=str(prev), qat_epochs=epochs, qat_lr=qat_lr[i],
                     distill=distill[i], **common)
        print(json.dumps({"stage": f"{b}-bit", "float": meta["float_test_accuracy"], "qann": meta["qann_test_accuracy"],
                          "seconds": meta["train_seconds"]}), flush=True)
        prev = path


def main():
    """:func:`chain`; a :class:`FastSNNError` (a junk file where a stage should be, missing data, …) is one line,
    exit 2, like a bad option."""
    from fastsnn_lava.errors import FastSNNError
    try:
        chain()
    except FastSNNError as e:
        refuse(" ".join(str(e).split()))


if __name__ == "__main__":
    main()
