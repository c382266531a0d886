"""Running an exported network and reporting on it: ``fastsnn-run`` and ``fastsnn-report``.

:func:`evaluate` (``run``) runs a netx file on a dataset's test samples with the reference
simulation or Lava and returns the ``out.json`` record; :func:`report` builds the hardware report.
Both validate the file and its target before anything is simulated.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import checkpoint
from .convert import from_checkpoint as convert
from .data import balanced_subset, load_dataset
from .activity import simulate
from .errors import FastSNNError
from .hardware import check_network, load_target
from .ir import Network
from .options import BACKENDS
from .reference import qann_forward, run_batches


def accuracy(out: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose largest output is the label."""
    return float((out.argmax(1) == y).mean())


def evaluate(net_path: str, dataset: str = "digits", backend: str = "reference", samples: int | None = None,
             model_path: str | None = None, progress: bool = True, hw: str | None = "loihi2") -> dict:
    """Run the first ``samples`` test samples through ``backend``; the ``out.json`` record.

    The network is validated (keys, shapes and, unless ``hw`` is None, the target's integer
    ranges) before anything runs.
    """
    if backend not in BACKENDS:
        raise FastSNNError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "loihi2":
        from .lava import require_loihi2
        require_loihi2()
    handler, net = _open(net_path)
    cuba = net.family == "cuba"
    if backend != "reference" and not cuba:  # refuse what netx + Lava would compute differently before simulating
        handler.check(net)
    if hw:
        check_network(net, load_target(hw))
    x, y, n = dataset_samples(dataset, net.input_shape, samples, f"{net_path} takes", "the network")
    if model_path:
        _same_network(model_path, net, net_path)
    t0 = time.time()
    tuned = "finetune" in net.meta  # fine-tuned: its own integer QANN is not the trained one
    trained = (run_batches(convert(model_path, finetuned=False), x, qann_forward)
               if model_path and (tuned or cuba) else None)
    ref = simulate(net, x)  # the reference simulation, bit-exact and batched (engine.py / lif.py)
    own = None if cuba else run_batches(net, x, qann_forward)  # the integer QANN of the codes in the file
    if not (tuned or cuba):
        trained = own
    info = {"steps_per_sample": net.timesteps + len(net.layers)}
    if backend in ("lava-sim", "loihi2"):
        from .lava import require_lava
        require_lava()
        # Lava in a worker session (lava/isolated.py): Ctrl-C and SIGTERM end it cleanly
        out, info = handler.run_on_lava(net_path, x, progress=progress, hw=hw, hw_run=backend == "loihi2")
    else:
        out = ref
    wall = time.time() - t0
    if model_path:
        _, float_net, _ = checkpoint.load(model_path)
        with torch.no_grad():
            ann_acc = accuracy(float_net(torch.as_tensor(x, dtype=torch.float32) / net.input_max).numpy(), y)
        ann_scope = f"first {n} test samples"
    else:
        ann_acc = net.meta.get("float_test_accuracy")
        ann_scope = "full test set, recorded at training" if ann_acc is not None else "unknown (pass --model)"
    return {
        "backend": backend, "dataset": dataset, "network": str(net_path), "samples": n,
        "bits": net.bits, "timesteps": net.timesteps, "steps_per_sample": info["steps_per_sample"],
        "ann_accuracy": ann_acc, "ann_accuracy_scope": ann_scope,
        "qann_accuracy": None if trained is None else accuracy(trained, y), "snn_accuracy": accuracy(out, y),
        "qann_scope": ("the trained QANN" if trained is not None else
                       "unknown: pass --model, the checkpoint, to compare with the trained QANN"),
        "reference_accuracy": accuracy(ref, y),
        "reference_agreement": float((out == ref).all(1).mean()),
        "first_difference": _first_difference(out, ref),
        "qann_agreement": None if trained is None else float((out.argmax(1) == trained.argmax(1)).mean()),
        **({"tuned_qann_accuracy": accuracy(own, y),
            "tuned_qann_agreement": float((out.argmax(1) == own.argmax(1)).mean())} if tuned and own is not None
           else {}),
        "wall_seconds": round(wall, 3),
        "neuron": ["cuba"] if cuba else sorted({layer.neuron.name for layer in net.layers[:-1]}),
    }


def dataset_samples(dataset: str, input_shape: tuple, samples: int | None, who: str, trained: str):
    """``(x, y, n)``: ``samples`` test samples of ``dataset`` (all if None; else a class-balanced, seeded
    subset, :func:`~fastsnn_lava.data.balanced_subset`), refused in one line when their shape is not
    ``input_shape`` (``who`` takes inputs …, ``trained`` was trained on)."""
    ds = load_dataset(dataset)
    if tuple(ds.input_shape) != tuple(input_shape):
        raise FastSNNError(f"{who} inputs of shape {tuple(input_shape)}, but {dataset} has "
                           f"{ds.input_shape}: use the dataset {trained} was trained on")
    n = len(ds.x_test) if samples is None else min(int(samples), len(ds.x_test))
    if n < 1:
        raise FastSNNError("--samples must be at least 1")
    idx = balanced_subset(ds.y_test, n)
    return ds.x_test[idx], ds.y_test[idx], n


def _first_difference(out: np.ndarray, ref: np.ndarray) -> dict | None:
    """The first sample and output where the backend's integer outputs differ from the reference's."""
    bad = np.argwhere(out != ref)
    if not len(bad):
        return None
    i, j = (int(v) for v in bad[0])
    return {"sample": i, "output": j, "backend": int(out[i, j]), "reference": int(ref[i, j]),
            "samples_differing": int((out != ref).any(1).sum())}


run = evaluate  # the CLI's name (fastsnn-run) for the same function


def _same_network(model_path: str, net, net_path) -> None:
    """Refuse a ``--model`` checkpoint that is not the one ``net_path`` was exported from: the input
    shape, the bits, the number of layers and every layer's weight shape must agree."""
    model = convert(model_path)
    ours = [tuple(np.shape(layer.weight)) for layer in net.layers if layer.weight is not None]
    theirs = [tuple(layer.weight.shape) for layer in model.layers]
    if (tuple(model.input_shape) != tuple(net.input_shape) or model.bits != (net.bits or model.bits)
            or ours != theirs):
        raise FastSNNError(f"--model {model_path} is not the checkpoint {net_path} was exported from (its layers "
                           f"{theirs}, b = {model.bits}; the network's {ours}): pass the matching checkpoint")


def _open(net_path: str, steps: int | None = None):
    """(format handler, network) of a network file (:mod:`fastsnn_lava.formats`); ``steps``: the time steps
    of a slayer file without ``/fastsnn``."""
    from . import formats
    from .inputs import open_hdf5
    open_hdf5(net_path).close()  # a regular HDF5 file without soft or external links, before any sniffing
    handler = formats.detect(net_path)
    return handler, handler.read(net_path, timesteps=steps)


def load_any(net_path: str, steps: int | None = None) -> Network:
    """The network of a file of any format (:mod:`fastsnn_lava.formats`): IF or CUBA neurons."""
    return _open(net_path, steps)[1]


def _load_input(path: str, net) -> np.ndarray:
    """The raw integer inputs of ``--input``: one ``.npy`` array (N, *input_shape) or a time series
    (N, T, ...) of integers; for this project's IF networks in [0, input_max]."""
    from .inputs import MAX_VALUES, regular_file
    regular_file(path, ".npy array")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)  # the header first: a huge shape costs nothing
    except Exception as e:
        raise FastSNNError(f"{path} is not a NumPy .npy array ({type(e).__name__}): save one with numpy.save") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise FastSNNError(f"{path} is an .npz archive of several arrays: save the one input array with numpy.save")
    if x.size == 0:
        raise FastSNNError(f"{path} holds no samples (shape {x.shape}): give at least one input")
    if x.size > MAX_VALUES:
        raise FastSNNError(f"{path} declares {x.size:,} values, more than the {MAX_VALUES:,} read at once: "
                           "split it into smaller files")
    x = np.array(x)
    shape = tuple(net.input_shape)
    ok = x.ndim >= 1 and (tuple(x.shape[1:]) == shape or tuple(x.shape[2:]) == shape
                          or int(np.prod(x.shape[1:])) == int(np.prod(shape)))
    if not ok or x.dtype.kind not in "iuf" or not np.all(np.isfinite(x) & (x == np.round(x))):
        raise FastSNNError(f"{path}: expected integer inputs of shape (N, {', '.join(map(str, shape))}) or a time "
                           f"series (N, T, ...), got {x.dtype} {x.shape}")
    if net.family == "if" and (x.min() < 0 or x.max() > net.input_max):  # a CUBA file declares no range
        raise FastSNNError(f"{path}: inputs range over [{x.min()}, {x.max()}], but this network takes raw integers "
                           f"in [0, {net.input_max}] (the range it was trained on)")
    return x.astype(np.int64)


def report(net_path: str, dataset: str | None = "digits", input_path: str | None = None, hw: str = "loihi2",
           samples: int | None = None, steps: int | None = None, json_path: str | None = None,
           plot_path: str | None = None) -> dict:
    """Hardware report of a netx file (see :mod:`fastsnn_lava.report` and export/REPORT.md).

    Activity comes from the reference simulation on the test set of ``dataset`` or on the
    array in ``input_path``; ``steps`` gives the time steps of a slayer file without ``/fastsnn``.
    """
    import json

    from .atomic import write_text
    from .report import build_report
    net = load_any(net_path, steps)
    if input_path:
        x, y, source = _load_input(input_path, net), None, f"input {input_path}"
    else:
        ds = load_dataset(dataset)
        if tuple(ds.input_shape) != net.input_shape:
            raise FastSNNError(f"{net_path} takes inputs of shape {net.input_shape}, but {dataset} has "
                               f"{ds.input_shape}: use its dataset, or pass --input x.npy")
        x, y, source = ds.x_test, ds.y_test, f"{dataset} test set"
    if samples is not None:
        if samples < 1:
            raise FastSNNError("--samples must be at least 1")
        idx = np.arange(min(samples, len(x))) if y is None else balanced_subset(y, samples)
        x, y = x[idx], None if y is None else y[idx]
    rec = build_report(net, x, y, source=str(net_path), hw=hw)
    rec["inputs"] = source
    if json_path:
        write_text(json_path, json.dumps(rec, indent=2) + "\n")
    if plot_path:
        from .report_plot import plot_report
        plot_report(rec, plot_path)
    return rec
