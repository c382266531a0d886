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

from . import checkpoint
from .convert import from_checkpoint as convert, to_network
from .data import load_dataset
from .errors import FastSNNError
from .hardware import check_network, load_target
from .engine import Engine
from .ir import Network
from .spec import resolve_arch
from .netx import write_network
from .reference import qann_forward, run_batches
from .training import train as _train
from .evaluation import BACKENDS, accuracy, evaluate, load_any, report, run  # noqa: F401 - the API, one name per command

METHODS = ("layerwise", "tandem", "calibrate")  # fine-tuning methods (pipeline.finetune)
CALIBRATE_SAMPLES = 256  # images for --method calibrate when --calibrate is not given

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
              "snn_test_accuracy_before": accuracy(snn0, ds.y_test), "snn_test_accuracy": accuracy(snn, ds.y_test)}
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
