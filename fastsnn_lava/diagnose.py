"""Per-layer conversion diagnosis: where the SNN departs from its quantized ANN.

For every hidden layer ``l`` and test sample, the QANN's integer activation
level ``K^l`` (:func:`reference.qann_forward`) is compared with the SNN's spike
count ``N^l = Σ_t s^l(t)`` (:func:`reference.snn_forward`). Both are in units
of the layer's threshold θ^l (a level or a spike is θ of charge), so::

    mean_abs_error_theta^l  = mean over samples and neurons of |N^l − K^l|
    count_mismatch_share^l  = share of (sample, neuron) pairs with N^l ≠ K^l

The error is *accumulated*: ``K^l`` comes from the QANN's own forward pass, so
it includes what earlier layers passed on. Three SNNs are measured against the
same QANN: unsigned IF, signed IF, and signed IF fine-tuned (when the
checkpoint holds a fine-tuned SNN). Accuracy against the number of time steps
``T'`` (1 … 2T, same thresholds) shows the latency/accuracy trade-off.
The JSON keys are documented in ``export/DIAGNOSE.md``.
"""
from __future__ import annotations

import numpy as np
import torch

from . import checkpoint
from .convert import checkpoint_network
from .errors import FastSNNError
from .ir import Network
from .engine import Engine
from .data import balanced_subset
from .evaluation import dataset_samples
from .reference import qann_forward, run_batches, snn_forward  # noqa: F401 - the specification the engine equals

VARIANTS = ("unsigned", "signed", "signed_finetuned")


def _variants(model_path: str) -> tuple[Network, dict, dict]:
    qann, _, meta = checkpoint.load(model_path)
    signed = checkpoint_network(qann, meta, "signed_if")
    nets = {"unsigned": checkpoint_network(qann, meta, "unsigned_if"), "signed": signed}
    if meta.get("_snn"):
        nets["signed_finetuned"] = checkpoint.apply_snn(signed, meta)
    return signed, nets, meta


def layer_errors(ref: Network, nets: dict, x: np.ndarray, batch_size: int = 256) -> dict:
    """Per variant: accuracy inputs (outputs) and per-layer |N − K| sums and mismatch counts."""
    hidden = len(ref.layers) - 1
    acc = {k: {"abs": np.zeros(hidden), "diff": np.zeros(hidden), "out": []} for k in nets}
    qout = []
    engines = {name: Engine(net) for name, net in nets.items()}
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size]
            q = qann_forward(ref, xb)
            qout.append(q.out.numpy())
            for name, net in nets.items():
                counts = []
                out = engines[name].forward(xb, counts).cpu()  # = snn_forward, bit-exact and faster
                acc[name]["out"].append(out.numpy().astype(np.int64))
                for i, (n, k) in enumerate(zip(counts, q.levels)):
                    n = n.cpu().to(k.dtype)
                    acc[name]["abs"][i] += float((n - k).abs().sum())
                    acc[name]["diff"][i] += float((n != k).sum())
    return acc, np.concatenate(qout)


def accuracy_vs_t(nets: dict, x: np.ndarray, y: np.ndarray, t_max: int, batch_size: int = 256) -> dict:
    """Accuracy of each variant for T' = 1..t_max time steps."""
    from .engine import run
    out = {"T": list(range(1, t_max + 1))}
    for name, net in nets.items():
        out[name] = [float((run(net, x, timesteps=t, batch_size=batch_size).argmax(1) == y).mean())
                     for t in out["T"]]
    return out


def diagnose(model_path: str, dataset: str | None = None, samples: int | None = None,
             sweep_samples: int | None = 1000) -> dict:
    """The diagnosis record (see the module docstring and export/DIAGNOSE.md)."""
    ref, nets, meta = _variants(model_path)
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise FastSNNError(f"{model_path} does not name its dataset: pass --dataset")
    x, y, n = dataset_samples(dataset, ref.input_shape, samples, f"{model_path} takes", "the model")
    errs, qout = layer_errors(ref, nets, x)
    record = {"model": str(model_path), "dataset": dataset, "samples": n, "bits": ref.bits,
              "timesteps": ref.timesteps, "qann_accuracy": float((qout.argmax(1) == y).mean()), "variants": {}}
    for name, e in errs.items():
        out = np.concatenate(e["out"])
        layers = []
        for i, layer in enumerate(ref.layers[:-1]):
            count = n * layer.num_neurons
            layers.append({"layer": i + 1, "kind": layer.kind, "neurons": layer.num_neurons,
                           "threshold": layer.threshold,
                           "mean_abs_error_theta": e["abs"][i] / count,
                           "count_mismatch_share": e["diff"][i] / count})
        record["variants"][name] = {"accuracy": float((out.argmax(1) == y).mean()),
                                    "qann_agreement": float((out.argmax(1) == qout.argmax(1)).mean()),
                                    "layers": layers}
        if name == "signed_finetuned":  # beside the trained QANN: the integer QANN of the tuned codes, named
            tuned = run_batches(nets[name], x, qann_forward)
            record["tuned_qann_accuracy"] = float((tuned.argmax(1) == y).mean())
            record["variants"][name]["tuned_qann_agreement"] = float((out.argmax(1) == tuned.argmax(1)).mean())
    m = n if sweep_samples is None else min(n, int(sweep_samples))
    part = balanced_subset(y, m)
    sweep = accuracy_vs_t(nets, x[part], y[part], 2 * ref.timesteps)
    record["accuracy_vs_T"] = dict(sweep, samples=m, qann=float((qout[part].argmax(1) == y[part]).mean()))
    if "finetune" in meta:
        record["finetune"] = {k: meta["finetune"][k] for k in ("method", "rule", "epochs_per_layer", "epochs", "checks_per_epoch",
                                                               "seconds") if k in meta["finetune"]}
    return record


def plot(record: dict, path: str) -> None:
    """Two panels: per-layer mean |N − K| per variant, and accuracy against T'."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [v for v in VARIANTS if v in record["variants"]]
    layers = [r["layer"] for r in record["variants"]["signed"]["layers"]]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = [r["mean_abs_error_theta"] for r in record["variants"][name]["layers"]]
        ax1.bar(np.arange(len(layers)) + (j - (len(names) - 1) / 2) * width, vals, width,
                label=name.replace("_", " + "))
    ax1.set_xticks(np.arange(len(layers)), [f"{i}" for i in layers])
    ax1.set_xlabel("hidden layer")
    ax1.set_ylabel("mean |SNN count − QANN level|  (θ units)")
    ax1.set_title("per-layer conversion error")
    ax1.legend()
    sweep = record["accuracy_vs_T"]
    for name in names:
        ax2.plot(sweep["T"], [100 * a for a in sweep[name]], marker="o", ms=3, label=name.replace("_", " + "))
    ax2.axhline(100 * sweep["qann"], color="k", ls="--", lw=1, label="QANN")
    ax2.axvline(record["timesteps"], color="gray", ls=":", lw=1)
    ax2.set_xlabel("time steps T'  (dotted: T = 2^b − 1)")
    ax2.set_ylabel(f"accuracy (%)  [{sweep['samples']} test samples]")
    ax2.set_title("accuracy against latency")
    ax2.legend()
    fig.suptitle(f"{record['dataset']}, b = {record['bits']}, {record['samples']} test samples")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
