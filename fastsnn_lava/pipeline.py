"""The Python API, one function per command-line tool.

=================  =====================  ==============================================
function           command                does
=================  =====================  ==============================================
``train``          ``fastsnn-train``      float ANN → b-bit QANN → ``model.pt``
``convert``        (inside export)        ``model.pt`` → integer :class:`~fastsnn_lava.ir.Network`
``finetune``       ``fastsnn-finetune``   layer-wise fine-tuning → ``model_ft.pt``
``export``         ``fastsnn-export``     ``model.pt`` → netx ``net.h5``
``run``            ``fastsnn-run``        ``net.h5`` on a dataset (reference or Lava) → record
``diagnose``       ``fastsnn-diagnose``   per-layer SNN-vs-QANN error, accuracy vs T
=================  =====================  ==============================================

``evaluate`` is ``run`` under its older name.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .convert import to_network
from .data import load_dataset
from .errors import FastSNNError
from .hardware import check_network, load_target
from .engine import Engine
from .ir import Network
from .spec import resolve_arch
from .netx import read_network, write_network
from .reference import qann_forward, run_batches
from .training import train as _train

METHODS = ("layerwise", "tandem", "calibrate")  # fine-tuning methods (pipeline.finetune)
CALIBRATE_SAMPLES = 256  # images for --method calibrate when --calibrate is not given

BACKENDS = ("reference", "lava-sim", "loihi2")
NEURONS = ("signed", "unsigned", "cuba")
FORMATS = ("netx", "nir")  # fastsnn-export --format: lava-dl netx HDF5, or a NIR graph (--neuron cuba only)


def _check_init(path: str, dataset: str, arch: str, spec: list[dict]) -> tuple:
    """(QuantNet, float ANN, meta) of an ``--init`` checkpoint trained with the same arch and dataset."""
    qann, float_net, meta = checkpoint.load(path)
    if meta.get("spec") != spec or meta.get("dataset") != dataset:
        raise FastSNNError(f"--init {path} was trained as {meta.get('arch', 'a different architecture')} on "
                           f"{meta.get('dataset', 'another dataset')}, this run is {arch} on {dataset}: "
                           "progressive precision needs the same --arch and --dataset")
    return qann, float_net, meta


def train(dataset: str = "digits", arch: str = "cnn", bits: int = 2, out: str | None = None, epochs: int = 30,
          qat_epochs: int = 30, seed: int = 0, batch_size: int = 64, progress: bool = True,
          init: str | None = None, resume: str | None = None, lr: float = 2e-3, qat_lr: float = 5e-4,
          amp: bool = True, on_epoch=None, runtime=None, threads: int | None = None,
          train_samples: int | None = None):
    """Train a float ANN and its b-bit QANN; save the checkpoint to ``out`` if given.

    ``init``: a trained checkpoint (same arch and dataset, any bits) to start the QANN from
    (progressive precision: no float phase). ``resume``: a ``.resume`` file to continue; the
    run's settings then come from that file. ``threads``: CPU threads for the whole run (default:
    torch's); a fixed count makes a seeded CPU run repeat exactly on one machine whatever
    ``OMP_NUM_THREADS`` says (:func:`fastsnn_lava.runtime.cpu_threads`). ``train_samples``: train on
    a seeded random subset of this many training images (a quick trial; the test set stays whole). Under torchrun (see :mod:`fastsnn_lava.runtime`)
    every process calls this; only rank 0 writes files.

    Returns (QuantNet, float ANN, meta); meta holds the test accuracies, among them
    ``qann_test_accuracy``: the integer QANN (exactly what export writes) on the full test set.
    """
    from . import resume as resume_mod
    from .runtime import cpu_threads, setup, teardown
    state = None
    if resume:
        state = resume_mod.load(resume)
        c = state["config"]
        dataset, arch, bits, epochs, qat_epochs = c["dataset"], c["arch"], c["bits"], c["epochs"], c["qat_epochs"]
        seed, batch_size, lr, qat_lr, init = c["seed"], c["batch_size"], c["lr"], c["qat_lr"], c["init"]
        threads, train_samples = c.get("threads"), c.get("train_samples")
    if not 1 <= bits <= 8:
        raise FastSNNError(f"--bits must be 1..8, got {bits}")
    if min(epochs, qat_epochs) < 0 or batch_size < 1:
        raise FastSNNError("--epochs and --qat-epochs must be at least 0 and --batch-size at least 1")
    if threads is not None and threads < 1:
        raise FastSNNError(f"--threads must be at least 1, got {threads}")
    if train_samples is not None and train_samples < 1:
        raise FastSNNError(f"--train-samples must be at least 1, got {train_samples}")
    spec = resolve_arch(arch)
    source = _check_init(init, dataset, arch, spec) if init and not state else None
    ds = load_dataset(dataset)
    if train_samples is not None and train_samples < len(ds.x_train):
        import dataclasses
        pick = np.sort(np.random.default_rng(seed).permutation(len(ds.x_train))[:train_samples])
        ds = dataclasses.replace(ds, x_train=ds.x_train[pick], y_train=ds.y_train[pick])
    rt = runtime or setup(amp)
    config = dict(dataset=dataset, arch=arch, bits=bits, epochs=epochs, qat_epochs=qat_epochs, seed=seed,
                  batch_size=batch_size, lr=lr, qat_lr=qat_lr, init=init, world=rt.world,
                  threads=threads, train_samples=train_samples)
    try:
        with cpu_threads(threads):
            qann, float_net, metrics = _train(
                ds, spec, bits, epochs=epochs, qat_epochs=qat_epochs, seed=seed, batch_size=batch_size, lr=lr,
                qat_lr=qat_lr, progress=progress, init=None if state else source, runtime=rt, resume_state=state,
                resume_file=resume_mod.resume_path(out) if out else None, config=config, on_epoch=on_epoch)
            net = to_network(qann)
            qout = run_batches(net, ds.x_test, qann_forward)
            meta = dict(metrics, dataset=dataset, arch=arch, bits=bits, seed=seed, classes=ds.classes, threads=threads,
                        train_samples=len(ds.x_train),
                        qann_test_accuracy=float((qout.argmax(1) == ds.y_test).mean()), test_samples=len(ds.y_test))
            if init:
                meta["init_from"] = str(init)
                if source is not None:
                    meta["init_bits"] = source[2].get("bits")
            if out and rt.main:
                checkpoint.save(out, qann, float_net, meta)
                Path(resume_mod.resume_path(out)).unlink(missing_ok=True)
            rt.barrier()
    finally:
        if runtime is None:
            teardown()
    return qann, float_net, meta


def convert(model_path: str, neuron: str = "signed", trust_pickle: bool = False, finetuned: bool = True) -> Network:
    """The integer network of a checkpoint (``neuron``: signed or unsigned IF).

    A fine-tuned checkpoint gives its tuned weights unless ``finetuned=False``.
    """
    neurons = {"signed": "signed_if", "unsigned": "unsigned_if"}
    if neuron not in neurons:
        raise FastSNNError(f"--neuron must be 'signed' or 'unsigned', got {neuron!r}")
    qann, _, meta = checkpoint.load(model_path, trust_pickle=trust_pickle)
    keep = ("dataset", "arch", "bits", "seed", "classes", "float_test_accuracy", "qann_test_accuracy", "test_samples",
            "finetune")
    net = to_network(qann, neurons[neuron], {k: meta[k] for k in keep if k in meta})
    return checkpoint.apply_snn(net, meta) if finetuned else net


def finetune(model_path: str, out: str, dataset: str | None = None, epochs: int = 1, rule: str = "mismatch",
             force: bool = False, lr: float | None = None, batch_size: int = 128,
             max_samples: int | None = None, seed: int = 0, progress: bool = True, accuracy_samples: int = 5000,
             checks: int = 1, method: str = "layerwise", schedule: str = "halve",
             label_weight: float = 0.0, calibrate: int | None = None, gradient: str = "bptt",
             classifier: bool = False, average: float = 0.0) -> tuple[Network, dict]:
    """Fine-tuning of a checkpoint's signed-IF SNN: ``method="layerwise"`` (the paper's,
    :mod:`fastsnn_lava.finetune`; ``rule`` and ``force`` apply) or ``"tandem"`` (all hidden layers
    at once, distilled from the QANN, :mod:`fastsnn_lava.tandem`; ``epochs`` are whole-network epochs,
    ``gradient`` its backward: ``"bptt"`` or ``"qann"``, ``classifier`` whether the classifier is tuned too,
    ``average`` the decay of the averaged codes it judges, 0 for none),
    or ``"calibrate"`` (bias calibration only, :mod:`fastsnn_lava.calibrate`, no gradients).
    ``calibrate=N`` calibrates the biases on N seeded training images first (0 or None: not,
    except for ``method="calibrate"``, which then uses 256).

    Writes ``out``: the same checkpoint plus the tuned integer SNN, so it still exports
    losslessly. Returns the tuned network and the record stored in its meta under ``finetune``.
    """
    if method not in METHODS:
        raise FastSNNError(f"--method must be one of {METHODS}, got {method!r}")
    from .tandem import LR as TANDEM_LR
    lr = lr if lr is not None else (TANDEM_LR if method == "tandem" else 1e-3)  # layerwise: the paper's 1e-3
    from .finetune import finetune as _finetune, heldout_count
    qann, float_net, meta = checkpoint.load(model_path)
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise FastSNNError(f"{model_path} does not name its dataset: pass --dataset")
    if meta.get("_snn"):
        raise FastSNNError(f"{model_path} is already fine-tuned: fine-tune the original checkpoint")
    ds = load_dataset(dataset)
    if tuple(ds.input_shape) != tuple(qann.input_shape):
        raise FastSNNError(f"{model_path} takes inputs of shape {tuple(qann.input_shape)}, but {dataset} has "
                           f"{ds.input_shape}: use the dataset the model was trained on")
    net0 = to_network(qann)
    t0 = time.time()
    n_cal = calibrate if calibrate is not None else (CALIBRATE_SAMPLES if method == "calibrate" else 0)
    if n_cal < 0 or (method == "calibrate" and n_cal == 0):
        raise FastSNNError(f"--calibrate takes a number of training images ≥ 1 (0: off), got {n_cal}")
    start, calib = net0, {}
    if n_cal:
        from .calibrate import calibrate as _calibrate
        idx = np.random.default_rng(seed).choice(len(ds.x_train), min(n_cal, len(ds.x_train)), replace=False)
        start, report = _calibrate(net0, ds.x_train[np.sort(idx)])
        calib = {"calibration": report.__dict__}
    if method == "calibrate":
        net, reports, extra = start, [], {"rule": "mean_count"}
    elif method == "tandem":
        from .tandem import tandem
        net, summary = tandem(qann, net0, ds.x_train, epochs=epochs, lr=lr, batch_size=batch_size,
                              max_samples=max_samples, seed=seed, progress=progress, checks=checks, schedule=schedule,
                              y=ds.y_train, label_weight=label_weight, start=start, gradient=gradient,
                              classifier=classifier, average=average)
        reports, extra = [], {"rule": "heldout_kl" + ("+labels" if label_weight else ""), "epochs": epochs,
                              "schedule": schedule, "label_weight": label_weight, "gradient": gradient,
                              "classifier": classifier, "average": average,
                              "tandem": summary.__dict__}
    else:
        net, reports = _finetune(qann, net0, ds.x_train, ds.y_train, epochs=epochs, lr=lr, batch_size=batch_size,
                                 rule=rule, force=force, max_samples=max_samples, seed=seed, progress=progress,
                                 accuracy_samples=accuracy_samples, checks=checks, start=start)
        extra = {"rule": "force" if force else rule, "epochs_per_layer": epochs}
    snn = Engine(net).run(ds.x_test)  # the reference simulation, bit-exact and batched (engine.py)
    snn0 = Engine(net0).run(ds.x_test)
    record = {"method": method, **extra, **calib, "checks_per_epoch": checks, "lr": lr,
              "batch_size": batch_size,
              "samples_per_epoch": min(len(ds.x_train) - heldout_count(len(ds.x_train)),
                                       max_samples or len(ds.x_train)),
              "seconds": round(time.time() - t0, 1), "layers": [r.__dict__ for r in reports],
              "snn_test_accuracy_before": _accuracy(snn0, ds.y_test), "snn_test_accuracy": _accuracy(snn, ds.y_test)}
    checkpoint.save(out, qann, float_net, dict(meta, finetune=record), snn=net)
    return net, record


def export(model_path: str, out: str, neuron: str = "signed", hw: str | None = "loihi2",
           trust_pickle: bool = False, cuba_threshold: str = "half", format: str = "netx"):
    """Convert a checkpoint and write it as a netx HDF5 network (checked against ``hw``).

    ``neuron="cuba"`` writes a vanilla netx network of Lava's standard LIF (lossy, see
    :mod:`fastsnn_lava.cuba`) and returns its :class:`~fastsnn_lava.lif.LifNetwork`.
    ``format="nir"`` (``neuron="cuba"`` only) writes that network as a NIR graph instead
    (:mod:`fastsnn_lava.nir_export`); the IF neurons and residual networks are refused.
    """
    if neuron not in NEURONS:
        raise FastSNNError(f"--neuron must be one of {NEURONS}, got {neuron!r}")
    if format not in FORMATS:
        raise FastSNNError(f"--format must be one of {FORMATS}, got {format!r}")
    if format == "nir" and neuron != "cuba":
        from .nir_export import refusal
        raise FastSNNError(refusal(neuron))
    net = convert(model_path, "signed" if neuron == "cuba" else neuron, trust_pickle)
    if format == "nir" and net.has_skips:
        from .nir_export import RESIDUAL
        raise FastSNNError(RESIDUAL)
    if hw:
        check_network(net, load_target(hw))
    if neuron == "cuba":
        from .cuba import to_cuba
        from .hardware import check_lif
        lif = to_cuba(net, cuba_threshold)
        if hw:
            check_lif(lif, load_target(hw))
        if format == "nir":
            from .nir_export import write_nir
            write_nir(lif, out)
        else:
            from .netx.cuba import write_lif_network
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
    from .inputs import open_hdf5
    from .netx.cuba import is_lif_file
    open_hdf5(net_path).close()  # a regular HDF5 file without soft or external links, before any sniffing
    cuba = is_lif_file(net_path)
    if cuba:
        from .netx.cuba import read_lif_network
        net = read_lif_network(net_path)
        if hw:
            from .hardware import check_lif
            check_lif(net, load_target(hw))
    else:
        net = read_network(net_path)
        if backend != "reference":  # refuse what netx + Lava would compute differently before simulating
            from .netx.write import check_netx_weights
            check_netx_weights(net)
        if hw:
            check_network(net, load_target(hw))
    ds = load_dataset(dataset)
    if tuple(ds.input_shape) != net.input_shape:
        raise FastSNNError(f"{net_path} takes inputs of shape {net.input_shape}, but {dataset} has "
                           f"{ds.input_shape}: use the dataset the network was trained on")
    n = len(ds.x_test) if samples is None else min(int(samples), len(ds.x_test))
    if n < 1:
        raise FastSNNError("--samples must be at least 1")
    if model_path:
        _same_network(model_path, net, net_path)
    x, y = ds.x_test[:n], ds.y_test[:n]
    t0 = time.time()
    tuned = "finetune" in (getattr(net, "meta", None) or {})  # fine-tuned: its own integer QANN is not the trained one
    trained = (run_batches(convert(model_path, finetuned=False), x, qann_forward)
               if model_path and (tuned or cuba) else None)
    if cuba:
        from .lif import run_lif_batches
        ref = run_lif_batches(net, x)
        own = None
    else:
        ref = Engine(net).run(x)  # the reference simulation, bit-exact and batched (engine.py)
        own = run_batches(net, x, qann_forward)  # the integer QANN of the codes in the file
        if not tuned:
            trained = own
    info = {"steps_per_sample": net.timesteps + len(net.layers)}
    if backend in ("lava-sim", "loihi2"):
        from .lava import require_lava
        require_lava()
        from .lava import isolated  # Lava in a worker session: Ctrl-C and SIGTERM end it cleanly
        if cuba:
            out, info = isolated.run("vanilla", net_path, x, hw_run=backend == "loihi2")
        else:
            out, info = isolated.run("runner", net_path, x, progress=progress, hw=hw, hw_run=backend == "loihi2")
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
        "qann_accuracy": None if trained is None else _accuracy(trained, y), "snn_accuracy": _accuracy(out, y),
        "qann_scope": ("the trained QANN" if trained is not None else
                       "unknown: pass --model, the checkpoint, to compare with the trained QANN"),
        "reference_accuracy": _accuracy(ref, y),
        "reference_agreement": float((out == ref).all(1).mean()),
        "first_difference": _first_difference(out, ref),
        "qann_agreement": None if trained is None else float((out.argmax(1) == trained.argmax(1)).mean()),
        **({"tuned_qann_accuracy": _accuracy(own, y),
            "tuned_qann_agreement": float((out.argmax(1) == own.argmax(1)).mean())} if tuned and own is not None
           else {}),
        "wall_seconds": round(wall, 3),
        "neuron": ["cuba"] if cuba else sorted({layer.neuron for layer in net.layers[:-1]}),
    }


def _first_difference(out: np.ndarray, ref: np.ndarray) -> dict | None:
    """The first sample and output where the backend's integer outputs differ from the reference's."""
    bad = np.argwhere(out != ref)
    if not len(bad):
        return None
    i, j = (int(v) for v in bad[0])
    return {"sample": i, "output": j, "backend": int(out[i, j]), "reference": int(ref[i, j]),
            "samples_differing": int((out != ref).any(1).sum())}


run = evaluate  # the CLI's name (fastsnn-run) for the same function


def diagnose(model_path: str, dataset: str | None = None, samples: int | None = None, sweep_samples: int | None = 1000,
             json_path: str | None = None, plot_path: str | None = None) -> dict:
    """Per-layer SNN-vs-QANN error and accuracy against T (see :mod:`fastsnn_lava.diagnose`)."""
    import json

    from .atomic import write_text
    from .diagnose import diagnose as _diagnose
    from .diagnose import plot
    rec = _diagnose(model_path, dataset, samples, sweep_samples)
    if json_path:
        write_text(json_path, json.dumps(rec, indent=2) + "\n")
    if plot_path:
        plot(rec, plot_path)
    return rec


def _same_network(model_path: str, net, net_path) -> None:
    """Refuse a ``--model`` checkpoint that is not the one ``net_path`` was exported from: the input
    shape, the bits, the number of layers and every layer's weight shape must agree."""
    model = convert(model_path)
    ours = [tuple(np.shape(layer.weight)) for layer in net.layers if getattr(layer, "weight", None) is not None]
    theirs = [tuple(layer.weight.shape) for layer in model.layers]
    if (tuple(model.input_shape) != tuple(net.input_shape) or model.bits != getattr(net, "bits", model.bits)
            or ours != theirs):
        raise FastSNNError(f"--model {model_path} is not the checkpoint {net_path} was exported from (its layers "
                           f"{theirs}, b = {model.bits}; the network's {ours}): pass the matching checkpoint")


def load_any(net_path: str, steps: int | None = None):
    """A netx file as an IF :class:`Network` (this project's neuron types) or a CUBA ``LifNetwork``."""
    from .inputs import open_hdf5
    from .netx.cuba import is_lif_file, read_lif_network
    open_hdf5(net_path).close()  # a regular HDF5 file without soft or external links, before any sniffing
    if is_lif_file(net_path):
        return read_lif_network(net_path, steps)
    return read_network(net_path)


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
    if isinstance(net, Network) and (x.min() < 0 or x.max() > net.input_max):  # a CUBA file declares no range
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
        x, y = x[:samples], None if y is None else y[:samples]
    rec = build_report(net, x, y, source=str(net_path), hw=hw)
    rec["inputs"] = source
    if json_path:
        write_text(json_path, json.dumps(rec, indent=2) + "\n")
    if plot_path:
        from .report_plot import plot_report
        plot_report(rec, plot_path)
    return rec
