"""Issue 3's results table: Fashion-MNIST, 5-spiking-layer CNN, b = 2, 3, 4 (``--arch`` for others, e.g. resnet8);
``--dataset cifar10``: the same table for CIFAR-10 (issue 24), with the float ANN and the training time.

For each b, from ``build/models/<prefix>_<arch>_b{b}.pt`` (prefix ``fashion`` or ``cifar10``;
``scripts/train_fashion.py``, ``scripts/train_cifar10.py``):
QANN, SNN unsigned IF, SNN signed IF, and signed IF fine-tuned under both
acceptance rules (held-out mismatch, the default; training accuracy, the
paper's) — all on the full 10k test set with the reference simulation — plus
the per-layer errors of ``fastsnn-diagnose`` and Lava's simulator running the
fine-tuned network on the first ``--lava-samples`` test samples. ``--calibrate N`` adds the
bias calibration alone (:mod:`fastsnn_lava.tuning.calibration`, on N training images; added to a cached
row without redoing the rest); ``--tandem-calibrate N`` starts tandem from it. ``--tandem`` adds
whole-network fine-tuning (:mod:`fastsnn_lava.tuning.distillation`), which then is the network that
the diagnosis and Lava run; ``--rules ''`` skips the layer-wise rules (deep networks).
Writes ``benchmarks/results/<prefix>_<arch>.json``, the diagnosis plots
``benchmarks/results/<prefix>_<arch>_b{b}_diagnose.png``, and the README table
between ``<!-- fashion-table:start -->`` and ``<!-- fashion-table:end -->`` (other archs:
``<!-- fashion-table-<arch>:start -->``; CIFAR-10: ``<!-- cifar10-table-<arch>:start -->``).

    .venv/bin/python scripts/results_table.py [--bits 2,3,4] [--lava-samples 500] [--epochs 1]
    .venv/bin/python scripts/results_table.py --arch resnet20 --bits 2 --rules '' --tandem --tandem-epochs 4 --tandem-schedule cosine --tandem-labels 0.5 --tandem-lr 0.02 --tandem-average 0.99 --lava-samples 50 --calibrate 256
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastsnn_lava.atomic import fill_section  # noqa: E402
from fastsnn_lava.data import load_dataset  # noqa: E402
from fastsnn_lava.diagnose import diagnose, plot  # noqa: E402
from fastsnn_lava.tuning import heldout_count  # noqa: E402
from fastsnn_lava.engine import run  # noqa: E402
from fastsnn_lava.pipeline import convert, export, finetune  # noqa: E402
from fastsnn_lava.reference import run_batches, snn_forward  # noqa: E402
from fastsnn_lava.options import GRADIENTS, LAYERWISE_LR, SCHEDULES, TANDEM_LR, TuneOptions  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PREFIX = {"fashion-mnist": "fashion", "cifar10": "cifar10"}  # dataset: its files' prefix
NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def row(bits: int, models: Path, lava_samples: int, epochs: int, max_samples: int | None, lr: float,
        arch: str = "cnn5", checks: int = 1, rules: tuple = ("mismatch", "accuracy"), tandem: dict | None = None,
        calibrate: int = 0, dataset: str = "fashion-mnist", name: str | None = None) -> dict:
    """One row; cached in ``<models>/<prefix>_row[_<arch>]_b{bits}.json`` so an interrupted run resumes.

    ``rules``: the layer-wise acceptance rules to run; ``tandem``: settings of whole-network fine-tuning
    (``epochs``, ``lr``, ``checks``, ``max_samples``) or None. The headline fine-tuned network, which
    the diagnosis and Lava run, is the tandem one when there is one, else the layer-wise mismatch rule's."""
    pre = PREFIX[dataset]
    cache = models / (f"{pre}_row_b{bits}.json" if arch == "cnn5" else f"{pre}_row_{arch}_b{bits}.json")
    src = models / f"{pre}_{arch}_b{bits}.pt"
    out = cached_row(cache, src)
    if out is not None:
        if out.get("float") is not None:
            out.update(_training(src))  # the training record as this code reads it
        if lava_samples and "classes" not in out.get("lava", {"classes": 0}):  # run before the test split mixed
            stem = models / f"{pre}_{arch}_b{bits}_ft"
            _lava(out, Path(f"{stem}_{out['headline']}.pt"), Path(f"{stem}.h5"), load_dataset(dataset), lava_samples)
            cache.write_text(json.dumps(out))
        if calibrate and out.get("finetune_calibrate", {}).get("calibration", {}).get("samples") != calibrate:
            _calibrated(out, src, models / f"{pre}_{arch}_b{bits}_ft_calibrate.pt", calibrate)
            cache.write_text(json.dumps(out))
        return out
    out = stamped({"bits": bits, "timesteps": 2 ** bits - 1, "model": str(src), **_training(src)}, src)
    if calibrate:
        _calibrated(out, src, models / f"{pre}_{arch}_b{bits}_ft_calibrate.pt", calibrate)
    ft = {}
    for rule in rules:
        dst = models / f"{pre}_{arch}_b{bits}_ft_{rule}.pt"
        settings = dict(epochs=epochs, max_samples=max_samples, lr=lr, checks=checks)
        rec = _ft_record(dst, "layerwise", dataset, source=src, **settings) if dst.exists() else None  # an interrupted run's: reuse it
        if rec is None:
            _, rec = finetune(str(src), str(dst), rule=rule, progress=True, **settings)
        ft[rule] = (dst, rec)
        out[f"finetune_{rule}"] = rec
    if tandem:
        dst = models / f"{pre}_{arch}_b{bits}_ft_tandem.pt"
        rec = _ft_record(dst, "tandem", dataset, source=src, **tandem) if dst.exists() else None
        if rec is None:
            _, rec = finetune(str(src), str(dst), method="tandem", progress=True, **tandem)
        ft["tandem"] = (dst, rec)
        out["finetune_tandem"] = rec
    headline = "tandem" if tandem else "mismatch"
    out["headline"] = headline
    diag = diagnose(str(ft[headline][0]), dataset)
    plot(diag, RESULTS / f"{pre}_{name or arch}_b{bits}_diagnose.png")
    ds = load_dataset(dataset)

    def test_accuracy(path: Path) -> float:
        return float((run(convert(str(path)), ds.x_test).argmax(1) == ds.y_test).mean())

    out["diagnose"] = diag
    out["qann"] = diag["qann_accuracy"]
    out["snn_unsigned"] = diag["variants"]["unsigned"]["accuracy"]
    out["snn_signed"] = diag["variants"]["signed"]["accuracy"]
    out["snn_signed_ft"] = diag["variants"]["signed_finetuned"]["accuracy"]  # the headline network's
    if "mismatch" in ft:
        out["snn_signed_ft_layerwise"] = (out["snn_signed_ft"] if headline == "mismatch"
                                          else test_accuracy(ft["mismatch"][0]))
    if "accuracy" in ft:
        out["snn_signed_ft_paper_rule"] = test_accuracy(ft["accuracy"][0])
    if tandem:
        out["snn_signed_ft_tandem"] = out["snn_signed_ft"]
    out["signed_error_never_above_unsigned"] = all(
        s["mean_abs_error_theta"] <= u["mean_abs_error_theta"]
        for s, u in zip(diag["variants"]["signed"]["layers"], diag["variants"]["unsigned"]["layers"]))
    if lava_samples:
        _lava(out, ft[headline][0], models / f"{pre}_{arch}_b{bits}_ft.h5", ds, lava_samples)
    cache.write_text(json.dumps(out))
    return out


def _lava(out: dict, tuned: Path, h5: Path, ds, samples: int) -> None:
    """The headline network ``tuned`` exported to ``h5`` and run on Lava's simulator on the first ``samples``
    test images (CIFAR-10's are interleaved by class): accuracy and agreement with the reference into ``out``."""
    from fastsnn_lava.lava.runner import run_lava
    net = export(str(tuned), str(h5))
    x, y = ds.x_test[:samples], ds.y_test[:samples]
    t0 = time.time()
    lava, _ = run_lava(h5, x, progress=True)
    ref = run_batches(net, x, snn_forward)
    out["lava"] = {"samples": samples, "accuracy": float((lava.argmax(1) == y).mean()),
                   "reference_accuracy": float((ref.argmax(1) == y).mean()), "network": out["headline"],
                   "agreement": float((lava == ref).all(1).mean()), "seconds": round(time.time() - t0, 1),
                   "classes": int(len(set(y.tolist())))}


def _calibrated(out: dict, src: Path, dst: Path, samples: int) -> None:
    """Bias calibration alone on ``samples`` training images: its record and test accuracy into ``out``."""
    from fastsnn_lava.checkpoint import load
    rec = load(str(dst))[2].get("finetune") if dst.exists() and made_from(dst, src) else None
    if not rec or rec.get("method") != "calibrate" or rec["calibration"]["samples"] != samples:
        _, rec = finetune(str(src), str(dst), method="calibrate", calibrate=samples, progress=False)
    out["finetune_calibrate"] = rec
    out["snn_signed_calibrated"] = rec["snn_test_accuracy"]  # the engine on all 10,000 test samples


def _training(src: Path) -> dict:
    """The float ANN's test accuracy and the training of ``src`` and of the checkpoints it started from
    (``init_from``, progressive precision): QAT epochs per bit width, seconds in all."""
    from fastsnn_lava.checkpoint import load
    meta = load(str(src))[2]
    chain, seconds, path = [], 0.0, src
    while path is not None and Path(path).exists() and len(chain) < 8:
        m = load(str(path))[2]
        if m.get("init_from") or m.get("qat_epochs"):  # a QAT stage (a run from scratch: float, then QAT)
            chain.append(f"{m['bits']}-bit")
        if not m.get("init_from"):
            chain.append("float")
        seconds += float(m.get("train_seconds", 0.0))
        path = m.get("init_from")
    return {"float": meta.get("float_test_accuracy"), "distill": meta.get("distill", 0.0),
            "training": {"chain": " → ".join(reversed(chain)), "seconds": round(seconds, 1)}}


def _record(meta: dict) -> dict:
    """A checkpoint's training record: its meta less the network's codes and any fine-tuning (a fine-tuned
    checkpoint carries its source's record unchanged, train_seconds included)."""
    return {k: v for k, v in meta.items() if not k.startswith("_") and k != "finetune"}


def _digest(src: Path) -> str:
    from fastsnn_lava.checkpoint import load
    text = json.dumps(_record(load(str(src))[2]), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamped(out: dict, src: Path) -> dict:
    """``out`` with the digest of ``src``'s training record (``"source"``), which :func:`cached_row` checks."""
    return dict(out, source=_digest(src))


def cached_row(cache: Path, src: Path) -> dict | None:
    """The row cached in ``cache`` if it was made from ``src`` as it is now; None (and a note when there
    is a cache) otherwise: a checkpoint retrained in place gets its own row, not the earlier model's."""
    if not cache.exists():
        return None
    out = json.loads(cache.read_text())
    if src.exists() and out.get("source") == _digest(src):
        return out
    print(f"{cache} was made from another {src.name} than the one there now: measuring the row again", flush=True)
    return None


def made_from(path: Path, src: Path) -> bool:
    """Whether the fine-tuned checkpoint ``path`` was tuned from ``src`` as it is now (same training record)."""
    from fastsnn_lava.checkpoint import load
    same = _record(load(str(path))[2]) == _record(load(str(src))[2])
    if not same:
        print(f"{path} was tuned from another {src.name} than the one there now: tuning again", flush=True)
    return same


def _ft_record(path: Path, method: str, dataset: str, epochs: int, max_samples: int | None, lr: float, checks: int = 1,
               schedule: str = "halve", label_weight: float = 0.0, calibrate: int = 0,
               gradient: str = "bptt", classifier: bool = False, average: float = 0.0,
               source: Path | None = None) -> dict | None:
    """The fine-tuning record stored in ``path``'s meta, if it was made with these settings (and, given
    ``source``, from that checkpoint as it is now)."""
    from fastsnn_lava.checkpoint import load
    if source is not None and not made_from(path, source):
        return None
    rec = load(str(path))[2].get("finetune")
    if not rec or rec.get("method", "layerwise") != method or rec.get("lr") != lr \
            or rec.get("calibration", {}).get("samples", 0) != calibrate \
            or rec.get("epochs_per_layer", rec.get("epochs")) != epochs or rec.get("checks_per_epoch", 1) != checks \
            or (method == "tandem" and (rec.get("schedule", "halve") != schedule
                                        or rec.get("label_weight", 0.0) != label_weight
                                        or rec.get("gradient", "qann") != gradient
                                        or rec.get("classifier", False) != classifier
                                        or rec.get("average", 0.0) != average)):
        return None
    n = len(load_dataset(dataset).x_train)
    fit = n - heldout_count(n)  # the training set less the share the tuners hold out
    return rec if rec.get("samples_per_epoch") == min(fit, max_samples or fit) else None


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table; with the float ANN and the training when the rows carry them."""
    extra = all(r.get("float") is not None for r in rows)
    lines = ["| b | T |" + (" float ANN |" if extra else "") + " QANN | SNN unsigned IF | SNN signed IF | bias-calibrated | layer-wise fine-tuned "
             "| layer-wise, paper's rule | tandem fine-tuned | fine-tuned − QANN (pp) | Lava: network, samples, "
             "accuracy, = reference | fine-tuning: samples × epochs, lr (and schedule), checks per epoch, time |",
             "|---|---|" + ("---|" if extra else "") + "---|---|---|---|---|---|---|---|---|---|"
             + ("---|" if extra else "")]
    if extra:
        lines[0] += " training: precision steps, time (s) |"
    for r in rows:
        lava, head = r.get("lava"), r.get("headline", "mismatch")
        lv = (f"{'tandem' if head == 'tandem' else 'layer-wise'}, {lava['samples']}, {pct(lava['accuracy'])}, "
              f"{pct(lava['agreement'])} %" if lava else "not run")
        layerwise = r.get("snn_signed_ft_layerwise", r["snn_signed_ft"] if head == "mismatch" else None)
        cells = [pct(v) if v is not None else "not run"
                 for v in (r.get("snn_signed_calibrated"), layerwise, r.get("snn_signed_ft_paper_rule"),
                           r.get("snn_signed_ft_tandem"))]
        how = []
        if "finetune_calibrate" in r:
            c = r["finetune_calibrate"]
            how.append(f"calibration: {c['calibration']['samples']:,} images, {c['calibration']['seconds']:.0f} s")
        for key, name in (("finetune_mismatch", "layer-wise"), ("finetune_tandem", "tandem")):
            if key in r:
                f = r[key]
                labels = f" + labels ×{f['label_weight']:g}" if f.get("label_weight") else ""
                if f.get("classifier"):
                    labels += ", classifier tuned"
                if f.get("average"):
                    labels += f", averaged codes (decay {f['average']:g})"
                if "calibration" in f:
                    labels += f", from the calibration on {f['calibration']['samples']:,} images"
                if key == "finetune_tandem":
                    name = f"tandem ({'BPTT' if f.get('gradient', 'qann') == 'bptt' else 'QANN graph'})"
                how.append(f"{name}: {f['samples_per_epoch']:,} × {f.get('epochs_per_layer', f.get('epochs'))}, "
                           f"{f['lr']:g}{' ' + f['schedule'] if 'schedule' in f else ''}{labels}, "
                           f"{f.get('checks_per_epoch', 1)}, {f['seconds']:.0f} s")
        lines.append(f"| {r['bits']} | {r['timesteps']} |" + (f" {pct(r['float'])} |" if extra else "")
                     + f" {pct(r['qann'])} | {pct(r['snn_unsigned'])} | "
                     f"{pct(r['snn_signed'])} | {' | '.join(cells)} | {100 * (r['snn_signed_ft'] - r['qann']):+.2f} "
                     f"({'tandem' if head == 'tandem' else 'layer-wise'}) | {lv} | {'; '.join(how)} |"
                     + (f" {r['training']['chain']}{', distilled' if r.get('distill') else ''}, "
                        f"{r['training']['seconds']:.0f} |" if extra else ""))
    return "\n".join(lines)


def main():
    from fastsnn_lava.heap import keep_freed_memory
    keep_freed_memory()  # freed tensors are reused, not faulted in again (fastsnn_lava/heap.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--dataset", default="fashion-mnist", choices=sorted(PREFIX))
    ap.add_argument("--arch", default="cnn5", help="the models' architecture: <prefix>_<arch>_b<bits>.pt")
    ap.add_argument("--models", default=str(ROOT / "build" / "models"))
    ap.add_argument("--lava-samples", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per layer")
    ap.add_argument("--max-samples", type=int, default=None, help="fine-tuning samples per epoch (default: all)")
    ap.add_argument("--lr", type=float, default=LAYERWISE_LR,
                    help="fine-tuning learning rate (default: the paper's %(default)s)")
    ap.add_argument("--checks", type=int, default=1, help="fine-tuning acceptance checks per epoch (default 1)")
    ap.add_argument("--rules", default="mismatch,accuracy",
                    help="layer-wise acceptance rules to run, comma-separated ('' for none)")
    ap.add_argument("--tandem", action="store_true", help="also fine-tune the whole network at once (tandem); "
                    "it becomes the headline network that the diagnosis and Lava run")
    ap.add_argument("--tandem-epochs", type=int, default=1)
    ap.add_argument("--tandem-lr", type=float, default=TANDEM_LR)
    ap.add_argument("--tandem-checks", type=int, default=8)
    ap.add_argument("--tandem-max-samples", type=int, default=None)
    ap.add_argument("--tandem-schedule", default=TuneOptions.schedule, choices=SCHEDULES)
    ap.add_argument("--tandem-gradient", default=TuneOptions.gradient, choices=GRADIENTS,
                    help="tandem's backward: BPTT through the steps (surrogate) or the QANN's graph at the counts")
    ap.add_argument("--tandem-classifier", action="store_true", help="tandem also tunes the classifier's codes")
    ap.add_argument("--tandem-average", type=float, default=0.0, metavar="D",
                    help="tandem judges the codes of a moving average of its masters (decay D per step; 0: off)")
    ap.add_argument("--tandem-labels", type=float, default=0.0, help="weight of a label term beside the KL")
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="also run the bias calibration alone on N training images (0: not)")
    ap.add_argument("--tandem-calibrate", type=int, default=0, metavar="N",
                    help="start tandem from a bias calibration on N training images (0: from the conversion)")
    ap.add_argument("--tag", default="", help="a second table of the same architecture (other training): its "
                    "JSON <prefix>_<arch>-<tag>.json, its README section …-table-<arch>-<tag>")
    ap.add_argument("--readme-only", action="store_true", help="re-render the README table from the JSON")
    a = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pre = PREFIX[a.dataset]
    name = a.arch + (f"-{a.tag}" if a.tag else "")
    path = RESULTS / f"{pre}_{name}.json"
    if a.readme_only:
        doc = json.loads(path.read_text())
    else:
        rules = tuple(r for r in a.rules.split(",") if r)
        tandem = (dict(epochs=a.tandem_epochs, lr=a.tandem_lr, checks=a.tandem_checks, max_samples=a.tandem_max_samples,
                       schedule=a.tandem_schedule, label_weight=a.tandem_labels, calibrate=a.tandem_calibrate,
                       gradient=a.tandem_gradient, classifier=a.tandem_classifier,
                       average=a.tandem_average)
                  if a.tandem else None)
        if not rules and not tandem:
            sys.exit("results_table.py: nothing to fine-tune: give --rules or --tandem")
        rows = [row(b, Path(a.models), a.lava_samples, a.epochs, a.max_samples, a.lr, a.arch, a.checks, rules, tandem,
                    a.calibrate, a.dataset, name) for b in map(int, a.bits.split(","))]
        doc = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
               "date": time.strftime("%Y-%m-%d"), "dataset": f"{a.dataset} (10,000 test samples)", "rows": rows}
        path.write_text(json.dumps(doc, indent=2) + "\n")
    body = readme_body(doc, name)
    fill_section(ROOT / "README.md", section(name, a.dataset), body)
    print(body)


def section(arch: str, dataset: str = "fashion-mnist") -> str:
    """The README section a table of ``arch`` lives in."""
    if dataset != "fashion-mnist":
        return f"{PREFIX[dataset]}-table-{arch}"
    return "fashion-table" if arch == "cnn5" else f"fashion-table-{arch}"


def readme_body(doc: dict, arch: str) -> str:
    """The README table and its caption, rendered from ``benchmarks/results/<prefix>_<arch>.json``."""
    dataset = doc.get("dataset", "fashion-mnist").split()[0]
    flag = "" if dataset == "fashion-mnist" else f" --dataset {dataset}"
    if "-" in arch:  # a tagged table (--tag): name its models' folder's architecture and the tag
        flag += " --arch {} --tag {}".format(*arch.split("-", 1))
    lava = "" if dataset == "fashion-mnist" else "; Lava on the first test images, an equal number of each class"
    return (table(doc["rows"]) + f"\n\nAccuracies in % on all 10,000 {NAMES[dataset]} test samples (reference "
            f"simulation, bit-exact with Lava){lava}; generated by `python scripts/results_table.py{flag}` on {doc['date']} "
            f"({doc['machine']}) from `benchmarks/results/{PREFIX[dataset]}_{arch}.json`.")


if __name__ == "__main__":
    main()
