"""The Python API, one function per command-line tool.

``train`` → ``model.pt``; ``export`` → ``net.h5``; ``evaluate`` runs a net.h5 on a
dataset with the reference simulation or Lava and returns the ``out.json`` record.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import checkpoint
from .convert import to_network
from .data import load_dataset
from .errors import FastSNNError
from .hardware import check_network, load_target
from .ir import Network
from .models import resolve_arch
from .netx import read_network, write_network
from .reference import qann_forward, run_batches, snn_forward
from .train import train as _train

BACKENDS = ("reference", "lava-sim", "loihi2")
NEURONS = ("signed", "unsigned", "cuba")


def train(dataset: str = "digits", arch: str = "cnn", bits: int = 2, out: str | None = None, epochs: int = 30,
          qat_epochs: int = 30, seed: int = 0, batch_size: int = 64, progress: bool = True):
    """Train a float ANN and its b-bit QANN; save the checkpoint to ``out`` if given.

    Returns (QuantNet, float ANN, meta); meta holds the test accuracies, among them
    ``qann_test_accuracy``: the integer QANN (exactly what export writes) on the full test set.
    """
    if not 1 <= bits <= 8:
        raise FastSNNError(f"--bits must be 1..8, got {bits}")
    ds = load_dataset(dataset)
    spec = resolve_arch(arch)
    qann, float_net, metrics = _train(ds, spec, bits, epochs=epochs, qat_epochs=qat_epochs, seed=seed,
                                      batch_size=batch_size, progress=progress)
    net = to_network(qann)
    qout = run_batches(net, ds.x_test, qann_forward)
    meta = dict(metrics, dataset=dataset, arch=arch, seed=seed, classes=ds.classes,
                qann_test_accuracy=float((qout.argmax(1) == ds.y_test).mean()), test_samples=len(ds.y_test))
    if out:
        checkpoint.save(out, qann, float_net, meta)
    return qann, float_net, meta


def convert(model_path: str, neuron: str = "signed", trust_pickle: bool = False) -> Network:
    """The integer network of a checkpoint (``neuron``: signed or unsigned IF)."""
    neurons = {"signed": "signed_if", "unsigned": "unsigned_if"}
    if neuron not in neurons:
        raise FastSNNError(f"--neuron must be 'signed' or 'unsigned', got {neuron!r}")
    qann, _, meta = checkpoint.load(model_path, trust_pickle=trust_pickle)
    keep = ("dataset", "arch", "bits", "seed", "classes", "float_test_accuracy", "qann_test_accuracy", "test_samples")
    return to_network(qann, neurons[neuron], {k: meta[k] for k in keep if k in meta})


def export(model_path: str, out: str, neuron: str = "signed", hw: str | None = "loihi2",
           trust_pickle: bool = False, cuba_threshold: str = "half"):
    """Convert a checkpoint and write it as a netx HDF5 network (checked against ``hw``).

    ``neuron="cuba"`` writes a vanilla netx network of Lava's standard LIF (lossy, see
    :mod:`fastsnn_lava.cuba`) and returns its :class:`~fastsnn_lava.lif.LifNetwork`.
    """
    if neuron not in NEURONS:
        raise FastSNNError(f"--neuron must be one of {NEURONS}, got {neuron!r}")
    net = convert(model_path, "signed" if neuron == "cuba" else neuron, trust_pickle)
    if hw:
        check_network(net, load_target(hw))
    if neuron == "cuba":
        from .cuba import to_cuba
        from .hardware import check_lif
        from .netx.cuba import write_lif_network
        lif = to_cuba(net, cuba_threshold)
        if hw:
            check_lif(lif, load_target(hw))
        write_lif_network(lif, out)
        return lif
    write_network(net, out)
    return net


def _accuracy(out: np.ndarray, y: np.ndarray) -> float:
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
    from .netx.cuba import is_lif_file
    cuba = is_lif_file(net_path)
    if cuba:
        from .netx.cuba import read_lif_network
        net = read_lif_network(net_path)
        if hw:
            from .hardware import check_lif
            check_lif(net, load_target(hw))
    else:
        net = read_network(net_path)
        if hw:
            check_network(net, load_target(hw))
    ds = load_dataset(dataset)
    if tuple(ds.input_shape) != net.input_shape:
        raise FastSNNError(f"{net_path} takes inputs of shape {net.input_shape}, but {dataset} has "
                           f"{ds.input_shape}: use the dataset the network was trained on")
    n = len(ds.x_test) if samples is None else min(int(samples), len(ds.x_test))
    if n < 1:
        raise FastSNNError("--samples must be at least 1")
    x, y = ds.x_test[:n], ds.y_test[:n]
    t0 = time.time()
    if cuba:
        from .lif import run_lif_batches
        ref = run_lif_batches(net, x)
        qann = run_batches(convert(model_path), x, qann_forward) if model_path else None
    else:
        ref = run_batches(net, x, snn_forward)
        qann = run_batches(net, x, qann_forward)
    info = {"steps_per_sample": net.timesteps + len(net.layers)}
    if backend in ("lava-sim", "loihi2"):
        from .lava import require_lava
        require_lava()
        if cuba:
            from .lava.vanilla import run_vanilla
            out, info = run_vanilla(net_path, x, hw_run=backend == "loihi2")
        else:
            from .lava.runner import run_lava
            out, info = run_lava(net_path, x, progress=progress, hw=hw, hw_run=backend == "loihi2")
    else:
        out = ref
    wall = time.time() - t0
    if model_path:
        _, float_net, _ = checkpoint.load(model_path)
        with torch.no_grad():
            ann_acc = _accuracy(float_net(torch.as_tensor(x, dtype=torch.float32) / net.input_max).numpy(), y)
        ann_scope = f"first {n} test samples"
    else:
        ann_acc = net.meta.get("float_test_accuracy")
        ann_scope = "full test set, recorded at training" if ann_acc is not None else "unknown (pass --model)"
    return {
        "backend": backend, "dataset": dataset, "network": str(net_path), "samples": n,
        "bits": net.bits, "timesteps": net.timesteps, "steps_per_sample": info["steps_per_sample"],
        "ann_accuracy": ann_acc, "ann_accuracy_scope": ann_scope,
        "qann_accuracy": None if qann is None else _accuracy(qann, y), "snn_accuracy": _accuracy(out, y),
        "reference_accuracy": _accuracy(ref, y),
        "reference_agreement": float((out == ref).all(1).mean()),
        "qann_agreement": None if qann is None else float((out.argmax(1) == qann.argmax(1)).mean()),
        "wall_seconds": round(wall, 3),
        "neuron": ["cuba"] if cuba else sorted({layer.neuron for layer in net.layers[:-1]}),
    }


def load_any(net_path: str, steps: int | None = None):
    """A netx file as an IF :class:`Network` (this project's neuron types) or a CUBA ``LifNetwork``."""
    from .netx.cuba import is_lif_file, read_lif_network
    if is_lif_file(net_path):
        return read_lif_network(net_path, steps)
    return read_network(net_path)


def _load_input(path: str, net) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FastSNNError(f"{path}: no such file") from None
    except Exception as e:
        raise FastSNNError(f"{path} is not a NumPy .npy array ({type(e).__name__}): save one with numpy.save") from None
    shape = tuple(net.input_shape)
    ok = x.ndim >= 1 and (tuple(x.shape[1:]) == shape or tuple(x.shape[2:]) == shape
                          or int(np.prod(x.shape[1:])) == int(np.prod(shape)))
    if not ok or x.dtype.kind not in "iuf" or not np.all(np.isfinite(x) & (x == np.round(x))):
        raise FastSNNError(f"{path}: expected integer inputs of shape (N, {', '.join(map(str, shape))}) or a time "
                           f"series (N, T, ...), got {x.dtype} {x.shape}")
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
        x, y = x[:samples], None if y is None else y[:samples]
    rec = build_report(net, x, y, source=str(net_path), hw=hw)
    rec["inputs"] = source
    if json_path:
        write_text(json_path, json.dumps(rec, indent=2) + "\n")
    if plot_path:
        from .report_plot import plot_report
        plot_report(rec, plot_path)
    return rec
