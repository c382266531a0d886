"""``fastsnn-export --model FILE.py:FUNCTION --dataset NAME -o net.h5``: a user's own model → integer SNN
file, without training.

The model (:func:`fastsnn_lava.user_model.load_model`, its trained ``--weights`` loaded with
``weights_only=True``) is converted by :func:`fastsnn_lava.fx.quantize` on a seeded, class-balanced
subset of the dataset's training split (:func:`fastsnn_lava.data.balanced_subset`, ``--samples N``,
default 256): that subset calibrates every clip α the model does not fix itself. The QuantNet's
integers (:func:`fastsnn_lava.convert.to_network`) are written like a checkpoint's
(:func:`fastsnn_lava.exporting.write_network`: same ``--neuron``, ``--format``, ``--hw``).

Putting a float model's weights and activations on the b-bit grid changes its outputs, so the
export is never silent about it: on the calibration images x (raw integers in [0, input_max]) it
reports the top-1 agreement and the largest logit difference of the model and the QANN,

    agreement = (1/N) Σ_n [argmax model(x_n / input_max) = argmax QANN(x_n)],
    max |Δlogit| = max_{n,k} |model(x_n / input_max)_k − QANN(x_n)_k|,

(:func:`fastsnn_lava.fx_quant.agreement`). A model already quantized the paper's way agrees up to its
own rounding.
"""
from __future__ import annotations

from . import user_model
from .errors import FastSNNError
from .options import EXPORT_CALIBRATION, TrainOptions

MODEL_ONLY = {"model_args": "--model-args", "weights": "--weights", "dataset": "--dataset", "bits": "--bits",
              "samples": "--samples", "save_checkpoint": "--save-checkpoint"}  # option: flag, only with --model
MAX_BITS = 8


def check_source(model_path, model, **given) -> None:
    """Exactly one of a checkpoint ``model_path`` and a user ``model``; the options of :data:`MODEL_ONLY`
    (``given``: their values, None when not given) only with ``model``, which needs a dataset."""
    if model_path is not None and model is not None:
        raise FastSNNError("give either a CHECKPOINT or --model FILE.py:FUNCTION, not both")
    if model_path is None and model is None:
        raise FastSNNError("give the CHECKPOINT that fastsnn-train wrote, or --model FILE.py:FUNCTION --dataset NAME "
                           "to convert your own model")
    flags = [flag for name, flag in MODEL_ONLY.items() if given.get(name) is not None]
    if model is None and flags:
        raise FastSNNError(f"{', '.join(flags)} go{'es' if len(flags) == 1 else ''} with --model (your own model), "
                           "not with a checkpoint (it knows its dataset and bits)")
    if model is not None and not given.get("dataset"):
        raise FastSNNError("--model needs --dataset NAME: it gives the input shape, input range, classes and the "
                           "calibration images")


def _bits(asked: int | None, own: int | None) -> int:
    """``--bits``, or the model's own (its quantized activations'), or the default; consistent and in 1..8."""
    if asked is not None and own is not None and int(asked) != own:
        raise FastSNNError(f"the model's quantized activations have {own} bits, not --bits {asked}: leave --bits "
                           f"out or pass --bits {own}")
    bits = int(asked if asked is not None else own if own is not None else TrainOptions.bits)
    if not 1 <= bits <= MAX_BITS:
        raise FastSNNError(f"--bits must be 1..{MAX_BITS}, got {bits}")
    return bits


def clipped_biases(qann) -> list[tuple[int, int, int, float]]:
    """Per layer of ``qann`` (a QuantNet) whose bias codes ``round(b/u)`` leave the target's range
    ``[−c_max − 1, c_max]`` (:func:`fastsnn_lava.grid.bias_codes` clips them): (layer, 1-based; clipped codes;
    codes; largest ``|b/u|``). A user's clip α far above the layer's pre-activations drives θ to θ_max and
    the unit ``u = α/θ`` so small that a bias no longer fits; the exported QANN then differs from the model."""
    import torch

    from .grid import LOIHI2
    out = []
    with torch.no_grad():
        for k, (layer, u_in) in enumerate(zip(qann.layers, qann.units_in()), start=1):
            unit = layer.grid(u_in, qann.skip_alphas(k - 1))[2]
            raw = (layer.bias.detach().float() / unit).round()
            n = int(((raw < LOIHI2.bias_min) | (raw > LOIHI2.bias_max)).sum())
            if n:
                out.append((k, n, raw.numel(), float(raw.abs().max())))
    return out


def export_model(model, out: str, target: dict | None, dataset: str, model_args=None, weights: str | None = None,
                 bits: int | None = None, samples: int | None = None, seed: int = 0, neuron: str = "signed",
                 cuba_threshold: str = "half", format: str = "netx", save_checkpoint: str | None = None,
                 log=None, cuba_window: int = 1):
    """Convert ``model`` (``"FILE.py:FUNCTION"``/``"package.module:FUNCTION"`` with ``model_args``, or an
    ``nn.Module``) for ``dataset`` and write it to ``out`` (checked against ``target``, a loaded hardware
    target or None: see :func:`fastsnn_lava.exporting.write_network`). ``log`` (e.g. ``print``) receives
    the agreement line (and the limits report under ``--hw none``); ``save_checkpoint``: also write the
    checkpoint. Returns (network written, agreement record: :func:`fastsnn_lava.fx_quant.agreement` and
    ``samples``)."""
    import torch
    import torch.nn as nn

    from . import checkpoint, fx
    from .convert import to_network
    from .data import balanced_subset, load_dataset
    from .exporting import write_network
    from .fx_quant import agreement
    if isinstance(model, nn.Module) and model_args:
        raise FastSNNError("model_args apply to a model spec string, not to a module passed in")
    ds = load_dataset(dataset)
    torch.manual_seed(seed)  # FUNCTION's initial weights, when no --weights replace them
    module = model if isinstance(model, nn.Module) else user_model.load_model(model, model_args)
    if weights:
        user_model.load_weights(module, weights)
    shape = tuple(ds.input_shape)
    c = fx.convert(module, shape)
    if c.n_classes != ds.n_classes:
        raise FastSNNError(f"the model returns {c.n_classes} logits but {dataset} has {ds.n_classes} classes: give "
                           "the classifier that many outputs, or choose the dataset it was trained on")
    bits = _bits(bits, c.bits)
    pick = balanced_subset(ds.y_train, samples or EXPORT_CALIBRATION, seed)
    x = torch.as_tensor(ds.x_train[pick]).float()
    qann, float_net, spec = fx.quantize(module, shape, bits, ds.input_max, x, converted=c)
    stats = dict(agreement(module, qann, x, ds.input_max), samples=len(x), ties=c.ties)
    if log is not None:
        log(f"{user_model.describe(model)} and its {bits}-bit QANN (the file's integers) on {stats['samples']} "
            f"calibration images of {dataset}: top-1 agreement {stats['top1_agreement']:.4f}, max |Δlogit| "
            f"{stats['max_abs_logit_diff']:.4g}")
        for layer in c.user_layers:
            log(f"your layer {layer.summary()}")
        for k, n, total, worst in clipped_biases(qann):
            log(f"layer {k}: {n} of {total} bias codes clip at the target's bias range (largest |b/u| = {worst:.0f}, "
                f"unit u of the layer's grid): the exported QANN differs from the model there")
        if c.ties:
            log(f"{100 * c.ties:.2f}% of the probed quantized activations lie exactly on a rounding tie that the "
                "model rounds half to even (torch.round) and the SNN's IF neuron half up")
    net = write_network(to_network(qann), out, neuron, target, cuba_threshold, format, log, cuba_window)
    if save_checkpoint:
        meta = dict(dataset=dataset, arch=user_model.describe(model), seed=seed, classes=ds.classes,
                    model_args=user_model.parse_args(model_args) if not isinstance(model, nn.Module) else {},
                    weights=weights, calibration_samples=len(pick), agreement=stats)
        checkpoint.save(save_checkpoint, qann, float_net, meta)
    return net, stats
