"""Checkpoints: a versioned schema read without executing code.

A checkpoint (``model.pt``) is a dict of plain tensors and strings::

    {"format": "fastsnn-lava-checkpoint", "version": 1,
     "meta": "<JSON: arch spec, bits, input shape/max, classes, dataset, accuracies, seed,
              norm: per-channel input mean/std of the float ANN or absent>",
     "qann": <state_dict of the QuantNet>,
     "float": <state_dict of the float ANN>,
     "net": {"weight": [integer tensors], "bias": [integer tensors], "threshold": [int or None],
             "skips": [[integer tensors]]},
     "snn": {"weight": [int64 tensors], "bias": [int64 tensors]}}   (optional)

``net`` holds the integer network converted from the QANN when the checkpoint was written
(:meth:`~fastsnn_lava.models.QuantNet.codes`, one entry per layer: weight codes, bias codes,
threshold θ, None for the classifier, and shortcut codes): loading returns these integers
(``meta["_codes"]``, :func:`fastsnn_lava.convert.checkpoint_network`), so nothing after
conversion derives θ from α again. A checkpoint written before ``net`` existed still loads;
its network is then converted from the QANN.

``snn`` is written by fine-tuning (``fastsnn-finetune``): the integer weights and
biases of every layer of the tuned SNN. Its thresholds and shapes are those of
the QANN's conversion (fine-tuning freezes them); the QANN itself stays the
original, the target the SNN was tuned to. When ``meta["finetune"]["target"]`` is ``"cuba"`` the codes were
tuned through Lava's CUBA LIF of the mapping ``meta["finetune"]["cuba_threshold"]``
(:mod:`fastsnn_lava.tuning.cuba_tuning`): they are exported only as that network
(:func:`fastsnn_lava.exporting.check_tuned_for`).

It is read with ``torch.load(weights_only=True)``, which refuses anything but
tensors and plain containers, so loading a stranger's file cannot run code.
"""
from __future__ import annotations

import json
import math

import numpy as np
import torch

from .atomic import atomic_path
from .errors import FastSNNError
from .grid import LayerCodes
from .models import QuantNet, build_float
from .normalize import InputNorm

FORMAT, VERSION = "fastsnn-lava-checkpoint", 1
NARROW = (np.int8, np.int16, np.int32, np.int64)  # the dtypes a stored network's codes are written in


def save(path, qann: QuantNet, float_net: torch.nn.Module, meta: dict, snn=None) -> None:
    """Write a checkpoint; ``snn`` (a fine-tuned :class:`~fastsnn_lava.ir.Network`) is optional."""
    meta = dict({k: v for k, v in meta.items() if not k.startswith("_")}, spec=qann.spec, bits=qann.bits, input_shape=list(qann.input_shape),
                input_max=qann.input_max, n_classes=qann.n_classes)
    first = next(iter(float_net.children()), None)
    if isinstance(first, InputNorm):
        meta["norm"] = {"mean": first.mean.tolist(), "std": first.std.tolist()}
    blob = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta),
            "qann": qann.state_dict(), "float": float_net.state_dict(), "net": _net_blob(qann.codes())}
    if snn is not None:
        blob["snn"] = {"weight": [torch.as_tensor(layer.weight) for layer in snn.layers],
                       "bias": [torch.as_tensor(layer.bias) for layer in snn.layers]}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def _load_pickled_module(path) -> tuple[QuantNet, torch.nn.Module, dict]:
    """A whole pickled QuantNet (``torch.save(model)``): runs the file's code, so only on request."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise FastSNNError(f"{path} could not be unpickled ({type(e).__name__})") from None
    if not isinstance(obj, QuantNet):
        raise FastSNNError(f"{path} holds a {type(obj).__name__}, not a fastsnn-lava QuantNet")
    obj.eval()
    float_net = build_float(obj.spec, obj.input_shape, obj.n_classes).eval()
    return obj, float_net, {"spec": obj.spec, "bits": obj.bits, "source": "pickled module"}


def load(path, trust_pickle: bool = False) -> tuple[QuantNet, torch.nn.Module, dict]:
    """(QuantNet, float ANN, meta) from a checkpoint; FastSNNError on anything else.

    Only with ``trust_pickle`` is a pickled module accepted: unpickling it runs
    whatever code the file names, so do that only for files you trust.
    """
    from .inputs import regular_file
    regular_file(path, "checkpoint")
    if trust_pickle:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return _load_pickled_module(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refusals, truncated zips, foreign formats: all 'not a checkpoint'
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastSNNError(f"{path} is not a fastsnn-lava checkpoint ({first[:120]}): train one with "
                           "fastsnn-train (a pickled model loads only with --trust-pickle)") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("meta"), str):
        raise FastSNNError(f"{path} is not a fastsnn-lava checkpoint: train one with fastsnn-train")
    if blob.get("version") != VERSION:
        raise FastSNNError(f"{path} has checkpoint version {blob.get('version')}, this tool reads {VERSION}")
    try:
        meta = json.loads(blob["meta"])
        _check_meta(path, meta)
        qann = QuantNet(meta["spec"], tuple(meta["input_shape"]), meta["n_classes"], meta["bits"], meta["input_max"])
        qann.load_state_dict(blob["qann"])
        float_net = build_float(meta["spec"], tuple(meta["input_shape"]), meta["n_classes"], meta.get("norm"))
        float_net.load_state_dict(blob["float"])
    except FastSNNError:
        raise
    except Exception as e:  # a damaged schema: report, do not crash
        raise FastSNNError(f"{path} is a damaged checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    for part in ("qann", "float"):
        for name, t in blob[part].items():
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise FastSNNError(f"{path}: {part}.{name} holds non-finite values (inf or nan): the training "
                                   "diverged; train again (a lower --lr)")
    qann.eval()
    float_net.eval()
    if "net" in blob:
        meta["_codes"] = _stored_codes(path, blob["net"], qann)
    if "snn" in blob:
        meta["_snn"] = _snn_arrays(path, blob["snn"])
    return qann, float_net, meta


def _net_blob(codes: list[LayerCodes]) -> dict:
    """The ``net`` entry of a checkpoint: integer tensors, ints and None (``weights_only`` reads them), each
    array in the narrowest signed dtype that holds it (8-bit weight codes take one byte, not eight)."""
    def t(a):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        return torch.from_numpy(a.astype(next(d for d in NARROW if np.iinfo(d).min <= lo and hi <= np.iinfo(d).max)))
    return {"weight": [t(c.weight) for c in codes], "bias": [t(c.bias) for c in codes],
            "threshold": [c.threshold for c in codes], "skips": [[t(q) for q in c.skips] for c in codes]}


def _int_array(path, t, shape: tuple, what: str):
    """An integer tensor of the given shape as an int64 array, or a one-line error."""
    if not torch.is_tensor(t) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise FastSNNError(f"{path}: the stored network holds {getattr(t, 'dtype', type(t).__name__)} values "
                           f"where integer codes belong ({what}): save the checkpoint again")
    if tuple(t.shape) != tuple(shape):
        raise FastSNNError(f"{path}: the stored network's {what} has shape {tuple(t.shape)}, the QANN's "
                           f"{tuple(shape)}: save the checkpoint again")
    return t.numpy().astype("int64")


def _stored_codes(path, net, qann: QuantNet) -> list[LayerCodes]:
    """The integer network stored in a checkpoint, checked against the QANN's layers: integer codes of
    its weights' shapes, an even threshold ≥ 2 for every hidden layer and None for the classifier."""
    try:
        rows = list(zip(net["weight"], net["bias"], net["threshold"], net["skips"], strict=True))
        if len(rows) != len(qann.layers):
            raise FastSNNError(f"{path}: the stored network has {len(rows)} layers, the QANN {len(qann.layers)}: "
                               "save the checkpoint again")
        out = []
        for k, ((w, b, theta, skips), layer) in enumerate(zip(rows, qann.layers), start=1):
            ok = theta is None if not layer.hidden else (isinstance(theta, int) and not isinstance(theta, bool)
                                                         and theta >= 2 and theta % 2 == 0)
            if not ok:
                raise FastSNNError(f"{path}: layer {k} of the stored network has threshold {theta!r}, not "
                                   f"{'None (the classifier)' if not layer.hidden else 'an even integer ≥ 2'}")
            skip_shapes = [tuple(s.shape) for s in (layer.skip_weight if layer.skips else [])]
            if len(skips) != len(skip_shapes):
                raise FastSNNError(f"{path}: layer {k} of the stored network has {len(skips)} shortcuts, the "
                                   f"QANN {len(skip_shapes)}")
            out.append(LayerCodes(
                _int_array(path, w, layer.weight.shape, f"layer {k} weights"),
                _int_array(path, b, layer.bias.shape, f"layer {k} biases"), theta,
                [_int_array(path, q, sh, f"layer {k} shortcut weights") for q, sh in zip(skips, skip_shapes)]))
        return out
    except FastSNNError:
        raise
    except Exception as e:
        raise FastSNNError(f"{path} has a damaged stored network ({type(e).__name__}): "
                           "save the checkpoint again") from None


MAX_PARAMETERS = 2 ** 28  # the most weights a checkpoint's architecture may declare (1 GiB of float32)


def _check_meta(path, meta) -> None:
    """The fields a QuantNet is built from, before anything is allocated (hostile values are one line)."""
    from .spec import layer_shapes
    if not isinstance(meta, dict):
        raise FastSNNError(f"{path} is a damaged checkpoint (its meta is not a JSON object)")
    shape, bits, imax, classes = (meta.get(k) for k in ("input_shape", "bits", "input_max", "n_classes"))
    ints = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if not (isinstance(shape, list) and 1 <= len(shape) <= 3 and all(ints(d) and d >= 1 for d in shape)):
        raise FastSNNError(f"{path}: input_shape must be 1 to 3 positive integers, got {shape!r}")
    if not (ints(bits) and 1 <= bits <= 8):
        raise FastSNNError(f"{path}: bits must be an integer in 1..8, got {bits!r}")
    if not (ints(imax) and 1 <= imax <= 2 ** 16):
        raise FastSNNError(f"{path}: input_max must be an integer in 1..65536 (the largest raw input), got {imax!r}")
    if not (ints(classes) and 1 <= classes <= 2 ** 20):
        raise FastSNNError(f"{path}: n_classes must be a positive integer, got {classes!r}")
    if math.prod(shape) > MAX_PARAMETERS:
        raise FastSNNError(f"{path}: input_shape {shape} declares more than {MAX_PARAMETERS:,} inputs")
    declared = 0
    for s, in_shape, out_shape in layer_shapes(meta["spec"], tuple(shape), classes):
        fan_in = in_shape[0] * s.get("kernel", 1) ** 2 if s["kind"] == "conv" else math.prod(in_shape)
        declared += fan_in * out_shape[0]
        if declared > MAX_PARAMETERS:
            raise FastSNNError(f"{path}: its architecture declares more than {MAX_PARAMETERS:,} weights: "
                               "not a network this tool (or Loihi 2) can hold")


def _snn_arrays(path, snn) -> list[tuple]:
    """(weight, bias) integer arrays per layer of a stored fine-tuned SNN (integer codes, nothing else)."""
    try:
        pairs = list(zip(snn["weight"], snn["bias"], strict=True))
        out = []
        for w, b in pairs:
            for t in (w, b):
                if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                    raise FastSNNError(f"{path}: the fine-tuned SNN holds {t.dtype} values where integer codes "
                                       "belong: fine-tune it again")
            out.append((w.numpy().astype("int64"), b.numpy().astype("int64")))
        return out
    except FastSNNError:
        raise
    except Exception as e:
        raise FastSNNError(f"{path} has a damaged fine-tuned SNN ({type(e).__name__}): fine-tune it again") from None


def apply_snn(net, meta: dict):
    """The network with the checkpoint's fine-tuned weights and biases, if it has them."""
    import dataclasses
    pairs = meta.get("_snn")
    if not pairs:
        return net
    if len(pairs) != len(net.layers):
        raise FastSNNError(f"the fine-tuned SNN has {len(pairs)} layers, the QANN {len(net.layers)}: fine-tune again")
    layers = [dataclasses.replace(layer, weight=w, bias=b) for layer, (w, b) in zip(net.layers, pairs)]
    return dataclasses.replace(net, layers=layers)
