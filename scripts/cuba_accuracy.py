"""Accuracy of each export mode against the QANN on a dataset's test set (reference simulations),
and of the native CUBA network tuned through its own dynamics (issue 25).

For every checkpoint: the QANN, the signed-IF SNN (the default export) and the CUBA LIF
export under each ``--cuba-threshold`` choice, with the share of predictions that agree
with the QANN. ``--tune MODE[,MODE]`` adds, per mode, the CUBA network fine-tuned through
Lava's LIF (``fastsnn-finetune --target cuba --cuba-threshold MODE``, cached beside the
checkpoint as ``<stem>_cuba_<mode>.pt``; ``--epochs/--lr/--checks/--max-samples`` are its
settings) and ``--lava-samples N`` runs the most accurate tuned network's export on Lava's CPU simulator
with stock netx (``LIFReset``) on the first N test images: its accuracy and the share of samples
whose outputs equal the project's LIF reference. Prints a Markdown table; ``--json`` writes the
rows and ``--readme`` puts the table in README.md between ``<!-- modes-table:start -->`` and
``<!-- modes-table:end -->``.

Usage: .venv/bin/python scripts/cuba_accuracy.py model.pt [model2.pt ...] [--dataset digits] [--json out.json]
    README (the checkpoints of the README's "Fashion-MNIST with the same recipe"; the tunings take about
    30 min (b = 2), 55 min (b = 2 at k = 2) and 80 min (b = 3) each on one core, the rest ~15 min):
        .venv/bin/python scripts/cuba_accuracy.py build/modelsF2/fashion_cnn5_b2.pt \
            build/modelsF/fashion_cnn5_b3.pt --dataset fashion-mnist --tune half,per-layer,half@2 --epochs 4 \
            --checks 8 --lr 0.05 --per-layer --lava-samples 200 --windows 1,2,4 --tune-windows 1,2 \
            --json benchmarks/results/export_modes.json --readme
    (the README's run added --cached-only: the b = 3 network was tuned through its per-layer mapping only,
    each tuning run on its own by ``fastsnn_lava.pipeline.finetune`` with these settings, 1 thread each)

``--tune per-layer`` tunes through the mapping ``--per-layer`` picks; ``MODE@k`` tunes for the window k·T
(``--cuba-window k``); Lava runs the most accurate tuned network. ``--windows 1,2,4``: accuracy against the
window length k·T (``--cuba-window``), written to ``<json stem>_windows.json`` and the README section
``cuba-window-table``; ``--readme-only`` renders the main table from ``--json`` instead of measuring it
again; ``--update`` measures only the models given and keeps the other rows of ``--json``;
``--cached-only`` tunes nothing (a mode without a cached checkpoint of these settings shows "–").

CIFAR-10 (README sections ``modes-table-cifar10`` and ``…-windows``; the checkpoints of
``scripts/train_cifar10.py --net cnn5 --bits 3,2 --qat-epochs 3,10 …``, README: the documented command's
third stage came later, and its ``cifar10_cnn5_b2_stage2.pt`` is this ``cifar10_cnn5_b2.pt``), tunings first
(10, 36 and about 30 min on one core)::

    fastsnn-finetune build/models10/cifar10_cnn5_b2.pt --dataset cifar10 --target cuba --cuba-threshold half \
        [--cuba-window 2] --epochs 2 --max-samples 40000 --checks 8 --lr 0.05 \
        -o build/models10/cifar10_cnn5_b2_cuba_half[_w2].pt
    fastsnn-finetune build/models10/cifar10_cnn5_b3.pt --dataset cifar10 --target cuba \
        --cuba-threshold half,bias,half,bias,theta --epochs 2 --max-samples 40000 --checks 8 --lr 0.05 \
        -o build/models10/cifar10_cnn5_b3_cuba_perlayer.pt
    S="--dataset cifar10 --cached-only --epochs 2 --checks 8 --lr 0.05 --max-samples 40000 --per-layer \
        --lava-samples 100 --json benchmarks/results/export_modes_cifar10.json --readme --section modes-table-cifar10"
    .venv/bin/python scripts/cuba_accuracy.py build/models10/cifar10_cnn5_b2.pt build/models10/cifar10_cnn5_b3.pt \
        --tune half,half@2 $S
    .venv/bin/python scripts/cuba_accuracy.py build/models10/cifar10_cnn5_b3.pt --tune per-layer --update $S
    .venv/bin/python scripts/cuba_accuracy.py build/models10/cifar10_cnn5_b2.pt --tune half --windows 1,2,4 \
        --tune-windows 1,2 --readme-only $S

(the per-layer mapping is the one ``--per-layer`` picks: ``half,bias,half,bias,theta`` for that b = 3 network).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastsnn_lava.atomic import fill_section  # noqa: E402
from fastsnn_lava.checkpoint import load  # noqa: E402
from fastsnn_lava.cuba import to_cuba  # noqa: E402
from fastsnn_lava.engine import Engine  # noqa: E402
from fastsnn_lava.errors import FastSNNError  # noqa: E402
from fastsnn_lava.data import load_dataset  # noqa: E402
from fastsnn_lava.lif import run_lif_batches  # noqa: E402
from fastsnn_lava.options import CUBA_THRESHOLDS  # noqa: E402
from fastsnn_lava.pipeline import convert, export, finetune  # noqa: E402
from fastsnn_lava.reference import qann_forward, run_batches  # noqa: E402


def named(path, mode: str, window: int = 1, suffix: str = ".pt") -> Path:
    """Where the CUBA network of ``path`` under ``mode`` and window ``window``·T is kept: the tuned
    checkpoint (``.pt``) or its export (``.h5``) beside ``path``."""
    name = mode if "," not in mode else "perlayer"
    return Path(path).with_name(f"{Path(path).stem}_cuba_{name}" + (f"_w{window}" if window > 1 else "") + suffix)


def tuned(path: str, mode: str, dataset: str, settings: dict, window: int = 1,
          cached_only: bool = False) -> tuple[Path, dict] | None:
    """The checkpoint ``path`` fine-tuned through the CUBA LIF of ``mode`` run for ``window``·T steps (cached
    beside it while its settings match; with ``cached_only``, the cached one whatever its settings, which
    its record keeps, or None where there is none)."""
    out = named(path, mode, window)
    rec = load(str(out))[2].get("finetune") if out.exists() else None
    same = rec and (rec.get("cuba_threshold"), rec.get("cuba_window", 1)) == (mode, window)
    fits = same and (rec["lr"], rec["checks_per_epoch"], rec["epochs"]) == (
        settings["lr"], settings["checks"], settings["epochs"]) and settings.get("max_samples") in (
        None, rec.get("samples_per_epoch"))
    if same and (cached_only or fits):
        return out, rec
    if cached_only:
        return None
    _, rec = finetune(path, str(out), dataset=dataset, target="cuba", cuba_threshold=mode, cuba_window=window,
                      progress=True, **settings)
    return out, rec


def settings_of(rec: dict) -> dict:
    """The tuning settings a checkpoint's ``finetune`` record holds."""
    return {"epochs": rec.get("epochs"), "lr": rec.get("lr"), "checks": rec.get("checks_per_epoch"),
            "samples_per_epoch": rec.get("samples_per_epoch")}


def per_layer(net, x, y) -> str:
    """A ``--cuba-threshold`` per spiking layer, chosen greedily on training images ``x``: from the best single
    mapping, each layer in turn takes the mapping that makes the most of them right (ties keep the earlier)."""
    n = sum(not layer.accumulates for layer in net.layers)

    def score(modes):
        return int((run_lif_batches(to_cuba(net, ",".join(modes)), x).argmax(1) == y).sum())
    best = max(([m] * n for m in CUBA_THRESHOLDS), key=score)
    for i in range(n):
        best = max(([*best[:i], m, *best[i + 1:]] for m in CUBA_THRESHOLDS), key=score)
    return ",".join(best)


def window_table(path: str, x, y, windows: list, modes: list, dataset: str, settings: dict,
                 tune_windows: list, cached_only: bool = False) -> dict:
    """Accuracy against the window length kT: the signed IF run kT steps (same thresholds, v(0) = θ/2), the
    CUBA network as converted under each mapping, the first tuned mapping's network (tuned for k = 1) run kT
    steps, and that mapping tuned for each k of ``tune_windows``."""
    net = convert(path)
    T = net.timesteps

    def acc(out):
        return float((out.argmax(1) == y).mean())

    def lif_acc(n, m, k):  # None where to_cuba refuses the window (the read-out could overflow, a current wrap)
        try:
            lif = to_cuba(n, m, k)
        except FastSNNError:
            return None
        return acc(run_lif_batches(lif, x))
    curves = {"signed IF": {k: acc(Engine(net, timesteps=k * T).run(x)) for k in windows}}
    for m in CUBA_THRESHOLDS:
        curves[f"cuba/{m}"] = {k: lif_acc(net, m, k) for k in windows}
    for m in [m for m in modes if m in CUBA_THRESHOLDS][:1]:
        one = tuned(path, m, dataset, settings, cached_only=cached_only)
        if one is not None:
            curves[f"tuned cuba/{m} (for k = 1)"] = {k: lif_acc(convert(str(one[0])), m, k) for k in windows}
        each = {k: tuned(path, m, dataset, settings, k, cached_only) for k in tune_windows
                if curves[f"cuba/{m}"].get(k, 0) is not None}
        curves[f"tuned cuba/{m} (for each k)"] = {k: lif_acc(convert(str(t[0])), m, k)
                                                  for k, t in each.items() if t is not None}
    return {"model": Path(path).name, "bits": net.bits, "timesteps": T, "samples": len(y),
            "curves": {name: {str(k): v for k, v in c.items()} for name, c in curves.items()}}


def lava(h5: Path, lif, x, y) -> dict:
    """Stock netx on Lava's CPU simulator against the LIF reference ``lif`` on ``x``."""
    from fastsnn_lava.lava.vanilla import run_vanilla
    t0 = time.time()
    out, _ = run_vanilla(h5, x)
    ref = run_lif_batches(lif, x)
    return {"samples": len(x), "accuracy": float((out.argmax(1) == y).mean()),
            "reference_accuracy": float((ref.argmax(1) == y).mean()),
            "agreement": float((out == ref).all(1).mean()), "seconds": round(time.time() - t0, 1)}


def main():
    from fastsnn_lava.heap import keep_freed_memory
    keep_freed_memory()  # freed tensors are reused, not faulted in again (fastsnn_lava/heap.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--samples", type=int, default=None, help="the first N test samples (default: all)")
    ap.add_argument("--tune", default="", help="comma-separated --cuba-threshold modes (or per-layer) to fine-tune "
                    "through; MODE@k tunes for the window k·T")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--checks", type=int, default=8)
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--lava-samples", type=int, default=0)
    ap.add_argument("--windows", default="", help="comma-separated k: also accuracy against the window length kT "
                    "(README section cuba-window-table)")
    ap.add_argument("--per-layer", action="store_true", help="also a mapping per spiking layer, chosen greedily on "
                    "2,000 seeded training images; --tune per-layer tunes through it")
    ap.add_argument("--tune-windows", default="1", help="with --windows: the k the first --tune mode is tuned for")
    ap.add_argument("--cached-only", action="store_true", help="tune nothing: a --tune mode without a cached "
                    "checkpoint of these settings is left out of its row ('–')")
    ap.add_argument("--section", default="modes-table", help="the README section --readme writes (its window "
                    "table: cuba-window-table, or SECTION-windows)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    ap.add_argument("--readme-only", action="store_true", help="render the table from --json without measuring it "
                    "again (--windows are measured)")
    ap.add_argument("--update", action="store_true", help="measure only the models given and keep --json's rows of "
                    "the others (same order; a new model's row goes last)")
    a = ap.parse_args()
    ds = load_dataset(a.dataset)
    x, y = ds.x_test[:a.samples], ds.y_test[:a.samples]
    modes = [m for m in a.tune.split(",") if m]
    settings = dict(epochs=a.epochs, lr=a.lr, checks=a.checks, max_samples=a.max_samples)
    if a.readme_only and not a.json:
        sys.exit("cuba_accuracy.py: --readme-only renders the rows of --json FILE")
    rows = json.loads(Path(a.json).read_text()) if a.readme_only else []
    for path in [] if a.readme_only else a.models:
        net = convert(path)
        q = run_batches(net, x, qann_forward).argmax(1)
        outs = {"signed IF": Engine(net).run(x).argmax(1)}
        row = {"model": Path(path).name, "bits": net.bits, "qann": float((q == y).mean())}
        try:
            outs.update({f"cuba/{m}": run_lif_batches(to_cuba(net, m), x).argmax(1) for m in CUBA_THRESHOLDS})
        except FastSNNError as e:  # a current could wrap, the read-out overflow: no CUBA mapping
            row["refused"] = str(e)
            row["signed IF"] = {"accuracy": float((outs["signed IF"] == y).mean()),
                                "qann_agreement": float((outs["signed IF"] == q).mean())}
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        chosen = None
        if a.per_layer:
            pick = np.sort(np.random.default_rng(0).choice(len(ds.x_train), min(2000, len(ds.x_train)), replace=False))
            chosen = per_layer(net, ds.x_train[pick], ds.y_train[pick])
            outs["cuba/per-layer"] = run_lif_batches(to_cuba(net, chosen), x).argmax(1)
            row["per_layer_modes"] = chosen
        extra, best = {}, None
        for token in modes:
            m, _, k = token.partition("@")  # MODE@k: tuned for the window k·T
            k = int(k or 1)
            if m == "per-layer":
                if chosen is None:
                    sys.exit("cuba_accuracy.py: --tune per-layer needs --per-layer")
                m = chosen
            got = tuned(path, m, a.dataset, settings, k, cached_only=a.cached_only)
            name = "tuned cuba/" + ("per-layer" if "," in m else m) + (f" (k = {k})" if k > 1 else "")
            if got is None:
                print(f"{Path(path).name}: no {name} checkpoint with these settings (--cached-only)", flush=True)
                continue
            src, rec = got
            lif = to_cuba(convert(str(src)), m, k)
            outs[name] = run_lif_batches(lif, x).argmax(1)
            extra[token if "," not in m else m + (f"@{k}" if k > 1 else "")] = {
                "checkpoint": src.name, "seconds": rec.get("seconds"), **settings_of(rec)}
            if best is None or (outs[name] == y).mean() > (outs[best[0]] == y).mean():
                best = (name, src, m, k, lif)
        if a.lava_samples and best is None:  # nothing tuned: Lava runs the most accurate mapping as converted
            name = max((n for n in outs if n.startswith("cuba/")), key=lambda n: (outs[n] == y).mean())
            m = chosen if name == "cuba/per-layer" else name.removeprefix("cuba/")
            best = (name, Path(path), m, 1, to_cuba(net, m))
        if a.lava_samples and best:  # Lava runs the most accurate tuned network
            name, src, m, k, lif = best
            h5 = src.with_suffix(".h5") if name.startswith("tuned ") else named(src, m, k, "_converted.h5")
            export(str(src), str(h5), neuron="cuba", cuba_threshold=m, cuba_window=k)
            row["lava"] = dict(lava(h5, lif, ds.x_test[:a.lava_samples], ds.y_test[:a.lava_samples]),
                               network=name.removeprefix("tuned "))
        for k, p in outs.items():
            row[k] = {"accuracy": float((p == y).mean()), "qann_agreement": float((p == q).mean())}
        if extra:
            row["tuning"] = extra
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.update and not a.readme_only and a.json and Path(a.json).exists():
        fresh = {r["model"]: r for r in rows}
        kept = json.loads(Path(a.json).read_text())
        rows = [fresh.pop(r["model"], r) for r in kept] + list(fresh.values())
    names = list(dict.fromkeys(k for r in rows for k in r if isinstance(r[k], dict) and "qann_agreement" in r[k]))
    lava_col = any("lava" in r for r in rows)
    lines = [f"Accuracy (agreement with the QANN's predictions) on {len(y):,} {a.dataset} test samples, "
             "reference simulations" + ("; Lava: stock netx on the CPU simulator, first "
                                        f"{max(r['lava']['samples'] for r in rows if 'lava' in r)} test samples, "
                                        "and the share equal to the LIF reference"
                                        if lava_col else "") + ":\n",
             "| model | b | QANN | " + " | ".join(names) + (" | Lava (the best tuned, else as converted) | Lava = ref |" if lava_col else " |"),
             "|---|---|---|" + "---|" * (len(names) + 2 * lava_col)]
    for r in rows:
        cells = [f"{r[m]['accuracy']:.2%} ({r[m]['qann_agreement']:.1%})" if m in r else
                 "refused¹" if "refused" in r else "–" for m in names]
        if lava_col:
            v = r.get("lava")
            cells += [f"{v['accuracy']:.2%} ({v['network']})", f"{v['agreement']:.0%} of {v['samples']}"] if v \
                else ["–", "–"]
        lines.append(f"| {r['model']} | {r['bits']} | {r['qann']:.2%} | " + " | ".join(cells) + " |")
    notes = [f"¹ {r['model']}: `--neuron cuba` refused: {r['refused']}" for r in rows if "refused" in r]
    notes += [f"Tuned {r['model']}: " + "; ".join(
        f"`{m}` {t['epochs']} epochs of {t['samples_per_epoch']:,} images, lr {t['lr']}, {t['checks']} checks each, "
        f"{t['seconds']:,.0f} s" for m, t in r["tuning"].items()) + "." for r in rows
        if "samples_per_epoch" in next(iter(r.get("tuning", {}).values()), {})]
    text = "\n".join(lines + ([""] + notes if notes else [])) + \
        "\n\nGenerated by `python scripts/cuba_accuracy.py` (see its docstring)."
    print(text)
    if a.json and not a.readme_only:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    if a.readme:
        fill_section(Path(__file__).resolve().parent.parent / "README.md", a.section, text)
    if a.windows:
        windows, tune_windows = [int(k) for k in a.windows.split(",")], [int(k) for k in a.tune_windows.split(",")]
        tables = [window_table(path, x, y, windows, modes, a.dataset, settings, tune_windows, a.cached_only)
                  for path, r in zip(a.models, rows) if "refused" not in r and Path(path).name == r["model"]]
        lines = [f"Accuracy on {len(y):,} {a.dataset} test samples against the window length k·T (reference "
                 "simulations; thresholds as exported):\n"]
        for t in tables:
            lines += [f"**{t['model']}** (b = {t['bits']}, T = {t['timesteps']}):\n",
                      "| network | " + " | ".join(f"k = {k}" for k in windows) + " |", "|---|" + "---|" * len(windows)]
            lines += [f"| {name} | " + " | ".join(("refused²" if c[str(k)] is None else f"{c[str(k)]:.2%}")
                                                 if str(k) in c else "–" for k in windows) + " |"
                      for name, c in t["curves"].items()]
            lines.append("")
        if any(v is None for t in tables for c in t["curves"].values() for v in c.values()):
            lines += ["² `to_cuba` refuses the window: over k·T steps the never-firing read-out's sum could pass its "
                      "17-bit threshold, or a current could wrap (see fastsnn_lava/cuba.py).", ""]
        wtext = "\n".join(lines) + "\nGenerated by `python scripts/cuba_accuracy.py --windows` (see its docstring)."
        print(wtext)
        if a.json:
            Path(a.json).with_name(Path(a.json).stem + "_windows.json").write_text(json.dumps(tables, indent=2) + "\n")
        if a.readme:
            fill_section(Path(__file__).resolve().parent.parent / "README.md",
                         "cuba-window-table" if a.section == "modes-table" else a.section + "-windows", wtext)


if __name__ == "__main__":
    main()
