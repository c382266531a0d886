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

``evaluate`` is ``run`` under its older name, ``tune`` is ``finetune``. Every keyword default comes
from :mod:`fastsnn_lava.options` (the command line's defaults too); fine-tuning dispatches through
the table ``TUNING`` (method → tuner, default learning rate).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import checkpoint
from .convert import checkpoint_network, from_checkpoint as convert, to_network
from .data import load_dataset
from .errors import FastSNNError
from .engine import Engine
from .ir import Network
from .options import (CALIBRATE_SAMPLES, CUBA_THRESHOLDS, LAYERWISE_LR, RUN_BACKEND, TANDEM_LR, TARGETS, TUNERS,
                      hardware_target, DiagnoseOptions, ExportOptions, ReportOptions, RunOptions, TrainOptions,
                      TuneOptions)
from .spec import resolve_arch
from .reference import qann_forward, run_batches
from .training import train as train_networks
from . import evaluation
from .evaluation import BACKENDS, accuracy, load_any  # noqa: F401 - part of the API

METHODS = TUNERS  # the older name of the fine-tuning methods
_T, _X, _F, _D = TrainOptions, ExportOptions, TuneOptions, DiagnoseOptions  # the defaults below come from options.py
_U, _R = RunOptions, ReportOptions


def _check_init(path: str, dataset: str, arch: str, spec: list[dict]) -> tuple:
    """(QuantNet, float ANN, meta) of an ``--init`` checkpoint trained with the same arch and dataset."""
    qann, float_net, meta = checkpoint.load(path)
    if meta.get("spec") != spec or meta.get("dataset") != dataset:
        raise FastSNNError(f"--init {path} was trained as {meta.get('arch', 'a different architecture')} on "
                           f"{meta.get('dataset', 'another dataset')}, this run is {arch} on {dataset}: "
                           "progressive precision needs the same --arch and --dataset")
    return qann, float_net, meta


MODULE = "<module>"  # a resume file's model when pipeline.train was given an nn.Module (pass it again)


def _resumed_model(config: dict, model):
    """The model of a resumed run: its config's spec string, or the module passed again."""
    stored = config.get("model")
    if stored == MODULE and (model is None or isinstance(model, str)):
        raise FastSNNError("this run trained an nn.Module passed to pipeline.train: pass it again as model=")
    return model if stored == MODULE else stored


def train(dataset: str = _T.dataset, arch: str = _T.arch, bits: int = _T.bits, out: str | None = _T.out,
          epochs: int = _T.epochs, qat_epochs: int = _T.qat_epochs, seed: int = _T.seed,
          batch_size: int = _T.batch_size, progress: bool = _T.progress, init: str | None = _T.init,
          resume: str | None = _T.resume, lr: float = _T.lr, qat_lr: float = _T.qat_lr, amp: bool = _T.amp,
          on_epoch=None, runtime=None, threads: int | None = _T.threads,
          train_samples: int | None = _T.train_samples, model=_T.model, model_args=_T.model_args,
          weights: str | None = _T.weights, distill: float = _T.distill):
    """Train a float ANN and its b-bit QANN; save the checkpoint to ``out`` if given.

    ``model`` replaces ``arch`` by a model the user wrote: ``"FILE.py:FUNCTION"`` or
    ``"package.module:FUNCTION"`` called with ``model_args`` (a dict or JSON object text), or an
    ``nn.Module`` itself (trained in place); ``weights``: its pretrained float ``state_dict`` file,
    loaded first (``epochs=0`` then keeps them). See :mod:`fastsnn_lava.user_model`.

    ``init``: a trained checkpoint (same arch and dataset, any bits) to start the QANN from
    (progressive precision: no float phase). ``resume``: a ``.resume`` file to continue; the
    run's settings then come from that file. ``threads``: CPU threads for the whole run (default:
    torch's); a fixed count makes a seeded CPU run repeat exactly on one machine whatever
    ``OMP_NUM_THREADS`` says (:func:`fastsnn_lava.runtime.cpu_threads`). ``train_samples``: train on
    a seeded random subset of this many training images (a quick trial; the test set stays whole). ``distill``:
    weight of the float ANN's outputs in the QAT loss (knowledge distillation; 0: labels only). Under torchrun
    (see :mod:`fastsnn_lava.runtime`) every process calls this; only rank 0 writes files.

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
        threads, train_samples, distill = c.get("threads"), c.get("train_samples"), c.get("distill", 0.0)
        model, model_args, weights = _resumed_model(c, model), c.get("model_args"), c.get("weights")
    if not 1 <= bits <= 8:
        raise FastSNNError(f"--bits must be 1..8, got {bits}")
    if not 0 <= distill <= 1:
        raise FastSNNError(f"--distill must be in [0, 1], got {distill}")
    if min(epochs, qat_epochs) < 0 or batch_size < 1:
        raise FastSNNError("--epochs and --qat-epochs must be at least 0 and --batch-size at least 1")
    if threads is not None and threads < 1:
        raise FastSNNError(f"--threads must be at least 1, got {threads}")
    if train_samples is not None and train_samples < 1:
        raise FastSNNError(f"--train-samples must be at least 1, got {train_samples}")
    if model is None and (model_args or weights):
        raise FastSNNError("--model-args and --weights go with --model (your own model), not with --arch")
    module, ds = None, None
    if model is not None:
        from . import user_model
        ds = load_dataset(dataset)
        module, spec = user_model.prepare(model, model_args, weights, ds.input_shape, ds.n_classes, bits,
                                              seed)
        arch, model_args = user_model.describe(model), user_model.parse_args(model_args)
    else:
        spec = resolve_arch(arch)
    source = _check_init(init, dataset, arch, spec) if init and not state else None
    ds = ds or load_dataset(dataset)
    if train_samples is not None and train_samples < len(ds.x_train):
        import dataclasses
        pick = np.sort(np.random.default_rng(seed).permutation(len(ds.x_train))[:train_samples])
        ds = dataclasses.replace(ds, x_train=ds.x_train[pick], y_train=ds.y_train[pick])
    rt = runtime or setup(amp)
    config = dict(dataset=dataset, arch=arch, bits=bits, epochs=epochs, qat_epochs=qat_epochs, seed=seed,
                  batch_size=batch_size, lr=lr, qat_lr=qat_lr, init=init, world=rt.world,
                  threads=threads, train_samples=train_samples, distill=distill)
    if module is not None:  # what a resumed run needs to rebuild the model
        config.update(model=model if isinstance(model, str) else MODULE, model_args=model_args, weights=weights)
    try:
        with cpu_threads(threads):
            qann, float_net, metrics = train_networks(
                ds, spec, bits, epochs=epochs, qat_epochs=qat_epochs, seed=seed, batch_size=batch_size, lr=lr,
                qat_lr=qat_lr, progress=progress, init=None if state else source, runtime=rt, resume_state=state,
                resume_file=resume_mod.resume_path(out) if out else None, config=config, on_epoch=on_epoch,
                model=module, distill=distill)
            net = to_network(qann)
            qout = run_batches(net, ds.x_test, qann_forward)
            meta = dict(metrics, dataset=dataset, arch=arch, bits=bits, seed=seed, classes=ds.classes, threads=threads,
                        train_samples=len(ds.x_train), distill=distill, epochs=0 if init else epochs,
                        qat_epochs=qat_epochs, lr=lr, qat_lr=qat_lr, batch_size=batch_size,
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


def _tune_layerwise(qann, net0, start, ds, o: TuneOptions, lr: float) -> tuple:
    """Fast-SNN's layer-wise fine-tuning (:mod:`fastsnn_lava.tuning.layerwise`): (network, layer reports, record)."""
    from .tuning import finetune as layerwise
    net, reports = layerwise(qann, net0, ds.x_train, ds.y_train, epochs=o.epochs, lr=lr, batch_size=o.batch_size,
                             rule=o.rule, force=o.force, max_samples=o.max_samples, seed=o.seed,
                             progress=o.progress, accuracy_samples=o.accuracy_samples, checks=o.checks, start=start)
    return net, reports, {"rule": "force" if o.force else o.rule, "epochs_per_layer": o.epochs}


def _tune_tandem(qann, net0, start, ds, o: TuneOptions, lr: float) -> tuple:
    """All hidden layers at once, distilled from the QANN (:mod:`fastsnn_lava.tuning.distillation`), through the
    signed IF or, with ``target="cuba"``, through Lava's CUBA LIF (:mod:`fastsnn_lava.tuning.cuba_tuning`)."""
    from functools import partial

    from .tuning import cuba_tandem, tandem
    tune = partial(cuba_tandem, threshold=o.cuba_threshold, window=o.cuba_window) if o.target == "cuba" else tandem
    net, summary = tune(qann, net0, ds.x_train, epochs=o.epochs, lr=lr, batch_size=o.batch_size,
                          max_samples=o.max_samples, seed=o.seed, progress=o.progress, checks=o.checks,
                          schedule=o.schedule, y=ds.y_train, label_weight=o.label_weight, start=start,
                          gradient=o.gradient, classifier=o.classifier, average=o.average)
    return net, [], {"rule": "heldout_kl" + ("+labels" if o.label_weight else ""), "epochs": o.epochs,
                     "schedule": o.schedule, "label_weight": o.label_weight, "gradient": o.gradient,
                     "classifier": o.classifier, "average": o.average, "tandem": summary.__dict__}


def _tune_calibrate(qann, net0, start, ds, o: TuneOptions, lr: float) -> tuple:
    """Bias calibration only (:mod:`fastsnn_lava.tuning.calibration`, done before the tuner runs): nothing more."""
    return start, [], {"rule": "mean_count"}


TUNING = {"layerwise": (_tune_layerwise, LAYERWISE_LR), "tandem": (_tune_tandem, TANDEM_LR),
          "calibrate": (_tune_calibrate, LAYERWISE_LR)}  # method: (tuner, its default learning rate)


def finetune(model_path: str, out: str, dataset: str | None = _F.dataset, epochs: int = _F.epochs,
             rule: str = _F.rule, force: bool = _F.force, lr: float | None = _F.lr, batch_size: int = _F.batch_size,
             max_samples: int | None = _F.max_samples, seed: int = _F.seed, progress: bool = _F.progress,
             accuracy_samples: int = _F.accuracy_samples, checks: int = _F.checks, method: str = _F.method,
             schedule: str = _F.schedule, label_weight: float = _F.label_weight,
             calibrate: int | None = _F.calibrate, gradient: str = _F.gradient, classifier: bool = _F.classifier,
             average: float = _F.average, target: str = _F.target,
             cuba_threshold: str = _F.cuba_threshold, cuba_window: int = _F.cuba_window) -> tuple[Network, dict]:
    """Fine-tuning of a checkpoint's signed-IF SNN: ``method="layerwise"`` (the paper's,
    :mod:`fastsnn_lava.tuning.layerwise`; ``rule`` and ``force`` apply) or ``"tandem"`` (all hidden layers
    at once, distilled from the QANN, :mod:`fastsnn_lava.tuning.distillation`; ``epochs`` are whole-network epochs,
    ``gradient`` its backward: ``"bptt"`` or ``"qann"``, ``classifier`` whether the classifier is tuned too,
    ``average`` the decay of the averaged codes it judges, 0 for none),
    or ``"calibrate"`` (bias calibration only, :mod:`fastsnn_lava.tuning.calibration`, no gradients).
    ``calibrate=N`` calibrates the biases on N seeded training images first (0 or None: not,
    except for ``method="calibrate"``, which then uses 256). ``target="cuba"`` tunes through Lava's CUBA LIF of
    the ``cuba_threshold`` mapping instead (tandem only, the default method then; the test accuracies are the
    CUBA network's; export it with ``neuron="cuba"`` and that mapping). The keywords are the fields of
    :class:`~fastsnn_lava.options.TuneOptions`.

    Writes ``out``: the same checkpoint plus the tuned integer SNN, so it still exports
    losslessly. Returns the tuned network and the record stored in its meta under ``finetune``.
    """
    if target not in TARGETS or not set(str(cuba_threshold).split(",")) <= set(CUBA_THRESHOLDS):
        raise FastSNNError(f"--target must be one of {TARGETS} and --cuba-threshold one of {CUBA_THRESHOLDS}, got "
                           f"{target!r} and {cuba_threshold!r}")
    method = method or ("tandem" if target == "cuba" else "layerwise")
    if method not in TUNING:
        raise FastSNNError(f"--method must be one of {TUNERS}, got {method!r}")
    if target != "cuba" and cuba_window != 1:
        raise FastSNNError(f"--cuba-window {cuba_window} applies to --target cuba only")
    clash = [f for f, bad in ((f"--method {method}", method != "tandem"), ("--calibrate", calibrate),
                              (f"--gradient {gradient}", gradient != "bptt")) if bad]
    if target == "cuba" and clash:
        raise FastSNNError(f"--target cuba tunes by tandem BPTT through the CUBA LIF: {', '.join(clash)} cannot "
                           "go with it")
    tuner, default_lr = TUNING[method]
    lr = lr if lr is not None else default_lr
    o = TuneOptions(dataset=dataset, method=method, calibrate=calibrate, epochs=epochs, rule=rule, force=force,
                    checks=checks, lr=lr, schedule=schedule, gradient=gradient, label_weight=label_weight,
                    classifier=classifier, average=average, batch_size=batch_size, max_samples=max_samples,
                    accuracy_samples=accuracy_samples, seed=seed, progress=progress, target=target,
                    cuba_threshold=cuba_threshold, cuba_window=cuba_window)
    from .tuning import heldout_count
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
    net0 = checkpoint_network(qann, meta)  # the network the checkpoint stores
    t0 = time.time()
    n_cal = calibrate if calibrate is not None else (CALIBRATE_SAMPLES if method == "calibrate" else 0)
    if n_cal < 0 or (method == "calibrate" and n_cal == 0):
        raise FastSNNError(f"--calibrate takes a number of training images ≥ 1 (0: off), got {n_cal}")
    start, calib = net0, {}
    if n_cal:
        from .tuning import calibrate as calibrate_biases
        idx = np.random.default_rng(seed).choice(len(ds.x_train), min(n_cal, len(ds.x_train)), replace=False)
        start, cal_report = calibrate_biases(net0, ds.x_train[np.sort(idx)])
        calib = {"calibration": cal_report.__dict__}
    net, reports, extra = tuner(qann, net0, start, ds, o, lr)
    if target == "cuba":  # the LIF reference of the CUBA network (lif.py), as export --neuron cuba writes it
        from .activity import simulate
        from .cuba import to_cuba
        snn, snn0 = (simulate(to_cuba(n, cuba_threshold, cuba_window), ds.x_test) for n in (net, net0))
        extra = dict(extra, cuba_threshold=cuba_threshold, cuba_window=cuba_window)
    else:
        snn = Engine(net).run(ds.x_test)  # the reference simulation, bit-exact and batched (engine.py)
        snn0 = Engine(net0).run(ds.x_test)
    record = {"method": method, "target": target, **extra, **calib, "checks_per_epoch": checks, "lr": lr,
              "batch_size": batch_size,
              "samples_per_epoch": min(len(ds.x_train) - heldout_count(len(ds.x_train)),
                                       max_samples or len(ds.x_train)),
              "seconds": round(time.time() - t0, 1), "layers": [r.__dict__ for r in reports],
              "snn_test_accuracy_before": accuracy(snn0, ds.y_test), "snn_test_accuracy": accuracy(snn, ds.y_test)}
    checkpoint.save(out, qann, float_net, dict(meta, finetune=record), snn=net)
    return net, record


tune = finetune  # the same function under the name of the fastsnn_lava.tuning package


def export(model_path: str | None, out: str, neuron: str = _X.neuron, hw: str | None = _X.hw,
           trust_pickle: bool = _X.trust_pickle, cuba_threshold: str = _X.cuba_threshold, format: str = _X.format,
           model=_X.model, model_args=_X.model_args, weights: str | None = _X.weights, dataset: str | None = _X.dataset,
           bits: int | None = _X.bits, samples: int | None = _X.samples, seed: int = _X.seed,
           save_checkpoint: str | None = _X.save_checkpoint, log=None, cuba_window: int = _X.cuba_window):
    """Convert a checkpoint ``model_path`` (or, with ``model_path=None``, a user's ``model`` for ``dataset``:
    :mod:`fastsnn_lava.user_export`) and write it as a netx HDF5 network (checked against ``hw``).

    ``neuron="cuba"`` writes a vanilla netx network of Lava's standard LIF (lossy, see
    :mod:`fastsnn_lava.cuba`) and returns its :class:`~fastsnn_lava.ir.Network` (CUBA LIF neurons).
    ``format="nir"`` (``neuron="cuba"`` only) writes that network as a NIR graph instead
    (:mod:`fastsnn_lava.formats.nir_graph`); the IF neurons and residual networks are refused.
    ``hw="none"``: nothing is refused, and ``log`` (e.g. ``print``) receives each target's broken
    limits; it also receives a user model's agreement with its QANN (:mod:`fastsnn_lava.exporting`).
    """
    from .exporting import export_target, write_network
    from .user_export import check_source, export_model
    check_source(model_path, model, model_args=model_args, weights=weights, dataset=dataset, bits=bits,
                 samples=samples, save_checkpoint=save_checkpoint)
    target = export_target(neuron, format, hw, cuba_window)
    if model is not None:
        return export_model(model, out, target, dataset, model_args, weights, bits, samples, seed, neuron,
                            cuba_threshold, format, save_checkpoint, log, cuba_window)[0]
    net = convert(model_path, "signed" if neuron == "cuba" else neuron, trust_pickle)
    return write_network(net, out, neuron, target, cuba_threshold, format, log, cuba_window)


def run(net_path: str, dataset: str = _U.dataset, backend: str = RUN_BACKEND, samples: int | None = _U.samples,
        model_path: str | None = _U.model, progress: bool = _U.progress, hw: str | None = _U.hw) -> dict:
    """Run the first ``samples`` test samples of ``dataset`` through ``backend`` (default: the
    reference simulation); the ``out.json`` record (:func:`fastsnn_lava.evaluation.evaluate`)."""
    return evaluation.evaluate(net_path, dataset, backend, samples, model_path, progress, hardware_target(hw))


evaluate = run  # the older name


def report(net_path: str, dataset: str | None = _R.dataset, input_path: str | None = _R.input, hw: str = _R.hw,
           samples: int | None = _R.samples, steps: int | None = _R.steps, json_path: str | None = _R.json,
           plot_path: str | None = _R.plot) -> dict:
    """Hardware report of a netx file (:func:`fastsnn_lava.evaluation.report`, export/REPORT.md)."""
    return evaluation.report(net_path, dataset, input_path, hw, samples, steps, json_path, plot_path)


def diagnose(model_path: str, dataset: str | None = _D.dataset, samples: int | None = _D.samples,
             sweep_samples: int | None = _D.sweep_samples, json_path: str | None = _D.json,
             plot_path: str | None = _D.plot) -> dict:
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
