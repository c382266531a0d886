"""Every command's options, their defaults and their choice lists, written once.

One frozen dataclass per command (``fastsnn-train`` → :class:`TrainOptions`, ...). The command
line (:mod:`fastsnn_lava.cli`) builds its argparse parser from these fields, the Python API
(:mod:`fastsnn_lava.pipeline`, :mod:`fastsnn_lava.training`) takes its keyword defaults from them,
and the library modules that check a choice (``tandem``, ``finetune``, ``cuba``, ``evaluation``)
import the tuples below. A field's metadata (:func:`option`) holds what the command line needs
beyond the default: help text (``%(default)s`` shows the default), the range an integer or real
must lie in (e.g. ``low=0, low_open=True``: a number x with 0 < x), choices, flag and metavar.

This module imports only the standard library (no torch): ``--help`` and option parsing stay fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

NEURONS = ("signed", "unsigned", "cuba")      # fastsnn-export --neuron: signed IF, unsigned IF, Lava's CUBA LIF
CUBA_THRESHOLDS = ("theta", "half", "bias")   # --cuba-threshold: the LIF threshold standing in for θ/2 (cuba.py)
FORMATS = ("netx", "nir")                     # fastsnn-export --format: lava-dl netx HDF5, or a NIR graph
BACKENDS = ("reference", "lava-sim", "loihi2")  # fastsnn-run --backend
TUNERS = ("layerwise", "tandem", "calibrate")  # fastsnn-finetune --method
RULES = ("mismatch", "accuracy")              # fastsnn-finetune --accept (layer-wise acceptance rule)
SCHEDULES = ("halve", "cosine")               # fastsnn-finetune --schedule (tandem step schedule)
GRADIENTS = ("bptt", "qann")                  # fastsnn-finetune --gradient (tandem backward pass)
TARGETS = ("signed", "cuba")                  # fastsnn-finetune --target: the neuron the SNN is tuned through

NO_TARGET = "none"            # --hw none: simulation only, no hardware target checked
CUBA_WINDOW_MAX = 64         # the longest --cuba-window, in multiples of T (cuba.to_cuba)
CUBA_THRESHOLD = "half"      # the default --cuba-threshold, of fastsnn-export and of cuba.to_cuba
RUN_BACKEND = "reference"    # pipeline.run's default backend (fastsnn-run's is RunOptions.backend: lava-sim)
LAYERWISE_LR = 1e-3          # fastsnn-finetune --method layerwise: the paper's SGD rate
TANDEM_LR = 0.005            # --method tandem: SGD step in codes per typical batch (see tuning/distillation.py)
CALIBRATE_SAMPLES = 256      # images for --method calibrate when --calibrate is not given
EXPORT_CALIBRATION = 256    # fastsnn-export --model: calibration images when --samples is not given
MODEL_ARGS_HELP = "with --model: a JSON object of keyword arguments for FUNCTION"  # train's and export's
DEMO_THREADS = 1             # fastsnn-demo trains on one thread: the same table whatever OMP_NUM_THREADS says


def option(default=None, help: str | None = None, *, type=None, low=None, high=None, low_open: bool = False,
           high_open: bool = False, choices: tuple | None = None, flag: str | None = None,
           metavar: str | None = None, required: bool = False, per_item: bool = False):
    """A dataclass field with a default and what its command-line flag needs (see the module).

    ``type``: int, float or str (default: the default's type, str for None). ``flag``: the flag's
    name when it is not ``--`` + the field's name with dashes; ``per_item``: the value may also be a
    comma-separated list of ``choices``; a bool defaulting to True is set
    off by ``--no-<name>``, one defaulting to False on by ``--<name>``.
    """
    meta = dict(help=help, type=type, low=low, high=high, low_open=low_open, high_open=high_open,
                choices=choices, flag=flag, metavar=metavar, required=required, per_item=per_item)
    return dataclasses.field(default=default, metadata=meta)


def fields(cls) -> dict:
    """{name: dataclasses.Field} of an options class, in order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def defaults(cls) -> dict:
    """{name: default} of an options class (the keyword defaults of its API function)."""
    return {name: f.default for name, f in fields(cls).items()}


@dataclass(frozen=True)
class TrainOptions:
    """``fastsnn-train`` and :func:`fastsnn_lava.pipeline.train`."""
    dataset: str = option("digits", metavar="NAME")
    arch: str = option("cnn")
    bits: int = option(2, "activation bits b (T = 2^b - 1), default %(default)s", low=1)
    out: str | None = option(None, "checkpoint to write (model.pt); OUTPUT.resume holds the run's state until it "
                             "finishes", flag="--output", metavar="OUTPUT", required=True)
    epochs: int = option(30, "float ANN epochs (default %(default)s)", low=0)
    qat_epochs: int = option(30, "quantization-aware epochs (default %(default)s)", low=0)
    batch_size: int = option(64, "batch size per process (default %(default)s)", low=1)
    lr: float = option(2e-3, "float ANN learning rate (Adam, cosine; default %(default)s)", low=0, low_open=True)
    qat_lr: float = option(5e-4, "QAT learning rate (default %(default)s)", low=0, low_open=True)
    distill: float = option(0.0, "QAT loss (1 - W) x cross-entropy + W x KL divergence from the float ANN's "
                            "outputs to the QANN's (knowledge distillation; default %(default)s: labels only)",
                            low=0, high=1, metavar="W")
    seed: int = option(0, low=0)
    train_samples: int | None = option(None, "train on a seeded random subset of N training images (a quick "
                                       "trial; default: all)", type=int, low=1, metavar="N")
    threads: int | None = option(None, "CPU threads for training (default: torch's, one per core); a fixed N "
                                 "makes a seeded run repeat exactly on this machine whatever OMP_NUM_THREADS is",
                                 type=int, low=1, metavar="N")
    init: str | None = option(None, "progressive precision: start the QANN from this trained checkpoint (same "
                              "--arch and --dataset, any bits) and skip the float phase (--epochs is ignored)",
                              metavar="MODEL.pt")
    resume: str | None = option(None, "continue an interrupted run from its resume file (its settings come "
                                "from that file)", metavar="OUTPUT.resume")
    amp: bool = option(True, "no bfloat16 autocast for the float ANN on a GPU")
    progress: bool = option(True)
    model: str | None = option(None, "your own model instead of --arch: FUNCTION of a Python file or module "
                               "returns a float torch.nn.Module taking inputs in [0, 1] (see "
                               "fastsnn_lava.user_model; the file's code runs: trusted files only)",
                               metavar="FILE.py:FUNCTION")
    model_args: str | None = option(None, MODEL_ARGS_HELP, metavar="JSON")
    weights: str | None = option(None, "with --model: load this state_dict (torch.save(model.state_dict())) "
                                 "into the model first; --epochs 0 then skips the float phase",
                                 metavar="STATE_DICT")


@dataclass(frozen=True)
class ExportOptions:
    """``fastsnn-export`` and :func:`fastsnn_lava.pipeline.export`."""
    neuron: str = option("signed", "hidden neurons: signed IF (Fast-SNN, default), unsigned IF (ablation), or "
                         "cuba: Lava's standard LIF, a vanilla netx file Loihi 2 runs natively (lossy, see "
                         "export/FORMAT.md)", choices=NEURONS)
    cuba_threshold: str = option(CUBA_THRESHOLD, "with --neuron cuba: the LIF threshold standing in for the "
                                 "IF's initial θ/2, or one per spiking layer, comma-separated (default "
                                 "%(default)s)", choices=CUBA_THRESHOLDS, per_item=True)
    cuba_window: int = option(1, "with --neuron cuba: run k·T steps instead of T, same thresholds (default "
                              "%(default)s; see export/FORMAT.md §10)", low=1, high=CUBA_WINDOW_MAX, metavar="k")
    format: str = option("netx", "netx: lava-dl netx HDF5 (default); nir: a NIR graph (nir.read) of the --neuron "
                         "cuba network, IF nodes with integer weights for snnTorch/Norse/... (see "
                         "export/FORMAT.md §11)", choices=FORMATS)
    hw: str | None = option("loihi2", "hardware target whose limits are checked (name or YAML path; 'none': "
                            "simulation only, nothing refused, the limits each target in hardware_configs/ would "
                            "break are printed)")
    trust_pickle: bool = option(False, "also accept a pickled QuantNet (unpickling runs the file's code: "
                                "trusted files only)")
    model: str | None = option(None, "convert your own model instead of a checkpoint, without training: FUNCTION "
                               "of a Python file or module returns a torch.nn.Module taking inputs in [0, 1] (see "
                               "fastsnn_lava.user_export; the file's code runs: trusted files only)",
                               metavar="FILE.py:FUNCTION")
    dataset: str | None = option(None, "with --model: the dataset that gives the input shape, input range, class "
                                 "count and calibration images", metavar="NAME")
    model_args: str | None = option(None, MODEL_ARGS_HELP, metavar="JSON")
    weights: str | None = option(None, "with --model: its trained state_dict (torch.save(model.state_dict())), "
                                 "read with weights_only=True", metavar="STATE_DICT")
    bits: int | None = option(None, "with --model: activation bits b (default: the b of the model's quantized "
                              f"activations, else {TrainOptions.bits})", type=int, low=1)
    samples: int | None = option(None, "with --model: N class-balanced, seeded training images calibrate the clips "
                                 f"and measure the agreement (default {EXPORT_CALIBRATION})", type=int, low=1,
                                 metavar="N")
    seed: int = option(0, "with --model: the seed of the calibration images and of FUNCTION's initial weights",
                       low=0)
    save_checkpoint: str | None = option(None, "with --model: also write the converted QANN as a checkpoint "
                                         "(model.pt) that fastsnn-export, -finetune and -diagnose take",
                                         metavar="MODEL.pt")


@dataclass(frozen=True)
class TuneOptions:
    """``fastsnn-finetune`` and :func:`fastsnn_lava.pipeline.finetune`."""
    dataset: str | None = option(None, "training data (default: the checkpoint's dataset)")
    method: str | None = option(None, "layerwise (default with --target signed, the paper's), tandem (whole network "
                                "at once, distilled from the QANN; default and only choice with --target cuba) or "
                                "calibrate (bias calibration only)", choices=TUNERS)
    target: str = option("signed", "the neuron the SNN is tuned through: signed (Fast-SNN's signed IF, default) or "
                         "cuba (Lava's standard CUBA LIF, for fastsnn-export --neuron cuba: tandem BPTT through the "
                         "reset-to-zero binary spikes)", choices=TARGETS)
    cuba_threshold: str = option(CUBA_THRESHOLD, "with --target cuba: the LIF threshold mapping tuned through, "
                                 "or one per spiking layer, comma-separated (default %(default)s; fastsnn-export "
                                 "--neuron cuba must use the same)", choices=CUBA_THRESHOLDS, per_item=True)
    cuba_window: int = option(1, "with --target cuba: tune the network run for k·T steps (default %(default)s; "
                              "fastsnn-export --neuron cuba must use the same --cuba-window)", low=1,
                              high=CUBA_WINDOW_MAX, metavar="k")
    calibrate: int | None = option(None, "first shift each hidden channel's bias code so that its mean spike "
                                   "count on N seeded training images matches the QANN's (default: off; "
                                   f"{CALIBRATE_SAMPLES} for --method calibrate)", type=int, low=0, metavar="N")
    epochs: int = option(1, "epochs per layer, or whole-network epochs for tandem (default %(default)s)", low=1)
    rule: str = option("mismatch", "keep an epoch's update only if the layer's held-out mismatch to the QANN "
                       "falls (default) or the SNN's training accuracy rises (the paper's rule)",
                       choices=RULES, flag="--accept")
    force: bool = option(False, "keep every update")
    checks: int = option(1, "acceptance checks per epoch, evenly spaced (default %(default)s: at its end); more "
                         "keep the best point within an epoch, one held-out evaluation each", low=1)
    lr: float | None = option(None, f"SGD learning rate (momentum 0.9). layerwise: default the paper's "
                              f"{LAYERWISE_LR:g}, which on the 8-bit integer grid moves few codes (the README's "
                              f"Fashion-MNIST table uses 0.1); tandem: the step in integer codes of a typical "
                              f"code per batch, default {TANDEM_LR:g}", type=float, low=0, low_open=True)
    schedule: str = option("halve", "tandem: halve the step on every rejected check (default), or anneal it as a "
                           "cosine over the run (a rejected check then only restores the kept codes)",
                           choices=SCHEDULES)
    gradient: str = option("bptt", "tandem: backpropagate through the T steps with a surrogate spike derivative "
                           "(default), or through the QANN's graph at the SNN's spike counts (cheaper, blind to "
                           "spike order)", choices=GRADIENTS)
    label_weight: float = option(0.0, "tandem: add W × the label cross-entropy to the distillation loss and the "
                                 "held-out criterion (default 0: pure distillation from the QANN)", low=0,
                                 flag="--labels", metavar="W")
    classifier: bool = option(False, "tandem: tune the classifier's weight and bias codes too (default: they "
                              "stay as converted)")
    average: float = option(0.0, "tandem: judge the codes of a moving average of the code masters (decay D per "
                            "step, e.g. 0.99) instead of the masters themselves (default 0: off)", low=0, high=1,
                            high_open=True, metavar="D")
    batch_size: int = option(128, low=1)
    max_samples: int | None = option(None, "train on at most N training samples per epoch", type=int, low=1)
    accuracy_samples: int = option(5000)  # API only: training samples for --accept accuracy
    seed: int = option(0, low=0)
    progress: bool = option(True)


FinetuneOptions = TuneOptions


@dataclass(frozen=True)
class RunOptions:
    """``fastsnn-run`` (:func:`fastsnn_lava.pipeline.run` defaults to the reference backend instead)."""
    dataset: str = option("digits", metavar="NAME")
    backend: str = option("lava-sim", choices=BACKENDS)
    samples: int | None = option(None, "N test samples, class-balanced and seeded (default: all)", type=int, low=1)
    model: str | None = option(None, "checkpoint, to measure the float ANN on the same samples")
    json: str | None = option(None, "write the results here")
    hw: str = option("loihi2", "check the network against this target's integer ranges first ('none' to skip)")
    progress: bool = option(True)


@dataclass(frozen=True)
class ReportOptions:
    """``fastsnn-report`` and :func:`fastsnn_lava.pipeline.report`."""
    dataset: str = option("digits", metavar="NAME")
    input: str | None = option(None, "a .npy array of raw integer inputs (N, *input_shape) instead")
    samples: int | None = option(None, "N samples, class-balanced and seeded when labelled (default: all)",
                                 type=int, low=1)
    steps: int | None = option(None, "time steps per sample, for files without /fastsnn", type=int, low=1)
    hw: str = option("loihi2", "target whose mapping is checked (name or YAML path)")
    json: str | None = option(None, "write the report here")
    plot: str | None = option(None, "write a PNG here")


@dataclass(frozen=True)
class DiagnoseOptions:
    """``fastsnn-diagnose`` and :func:`fastsnn_lava.pipeline.diagnose`."""
    dataset: str | None = option(None, "default: the checkpoint's dataset")
    samples: int | None = option(None, "N test samples, class-balanced and seeded (default: all)", type=int, low=1)
    sweep_samples: int = option(1000, "test samples for the accuracy-vs-T sweep (default %(default)s)", low=1)
    json: str | None = option(None, "write the record here")
    plot: str | None = option(None, "write a PNG: per-layer error and accuracy vs T")


@dataclass(frozen=True)
class DemoOptions:
    """``fastsnn-demo`` (``make demo``)."""
    out: str = option("build/demo", "folder for model.pt, net.h5 and results (default %(default)s)")
    archs: str = option("mlp,cnn", "comma-separated architectures (default %(default)s)")
    bits: int = option(TrainOptions.bits, low=1)
    lava_samples: int = option(360, "test samples run on Lava (default: all %(default)s)", low=1)
    threads: int = option(DEMO_THREADS, "CPU threads for training (default %(default)s: the same table whatever "
                          "OMP_NUM_THREADS is)", low=1, metavar="N")
    progress: bool = option(True)


def hardware_target(hw: str | None) -> str | None:
    """``hw`` as a target name or path, or None for ``--hw none`` (and None/empty): nothing to check."""
    return None if hw in (None, "", NO_TARGET) else hw
