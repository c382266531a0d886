"""Resume files: the state of an unfinished training run, written atomically after every epoch.

``fastsnn-train -o model.pt`` keeps ``model.pt.resume`` up to date while it trains and deletes it
once ``model.pt`` is written. ``--resume model.pt.resume`` continues from the last completed
epoch. The file is a dict of tensors and plain containers, read with ``weights_only=True``::

    {"format": "fastsnn-lava-resume", "version": 1,
     "config": "<JSON: dataset, arch, bits, epochs, qat_epochs, batch_size, lr, qat_lr, seed, init, world, threads>",
     "phase": "float" | "qat",   "epoch": <epochs completed in that phase>,
     "float": <float ANN state_dict>, "qann": <QuantNet state_dict, or {} in the float phase>,
     "optimizer": ..., "scheduler": ..., "generator": <torch.Generator state of the batch order>,
     "metrics": "<JSON: metrics gathered so far>"}

With the same number of processes, a resumed run repeats the uninterrupted one exactly
(batch order, augmentation, optimizer and learning-rate schedule all continue from the file).
"""
from __future__ import annotations

import json
import os

import torch

from .atomic import atomic_path
from .errors import FastSNNError

FORMAT, VERSION = "fastsnn-lava-resume", 1


def resume_path(output: str | os.PathLike) -> str:
    return f"{output}.resume"


def save(path, config: dict, phase: str, epoch: int, float_state: dict, qann_state: dict | None,
         optimizer: dict, scheduler: dict, generator: torch.Tensor, metrics: dict) -> None:
    blob = {"format": FORMAT, "version": VERSION, "config": json.dumps(config), "phase": phase, "epoch": epoch,
            "float": float_state, "qann": qann_state or {}, "optimizer": optimizer, "scheduler": scheduler,
            "generator": generator, "metrics": json.dumps(metrics)}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load(path) -> dict:
    """The resume dict, with ``config`` and ``metrics`` decoded; FastSNNError for anything else."""
    if not os.path.isfile(path):
        raise FastSNNError(f"{path}: no such file (fastsnn-train -o model.pt writes model.pt.resume while it trains)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastSNNError(f"{path} is not a fastsnn-lava resume file ({first[:120]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FastSNNError(f"{path} is not a fastsnn-lava resume file: pass the .resume file fastsnn-train wrote")
    if blob.get("version") != VERSION:
        raise FastSNNError(f"{path} has resume version {blob.get('version')}, this tool reads {VERSION}")
    try:
        blob["config"], blob["metrics"] = json.loads(blob["config"]), json.loads(blob["metrics"])
        assert blob["phase"] in ("float", "qat") and int(blob["epoch"]) >= 0
    except Exception:
        raise FastSNNError(f"{path} is a damaged resume file") from None
    return blob
