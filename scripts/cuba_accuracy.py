"""Accuracy of each export mode against the QANN on a dataset's test set (reference simulations).

For every checkpoint: the QANN, the signed-IF SNN (the default export) and the CUBA LIF
export under each ``--cuba-threshold`` choice, with the share of predictions that agree
with the QANN. Prints a Markdown table; ``--json`` writes the rows.

Usage: .venv/bin/python scripts/cuba_accuracy.py model.pt [model2.pt ...] [--dataset digits] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastsnn_lava.cuba import THRESHOLD_MODES, to_cuba  # noqa: E402
from fastsnn_lava.data import load_dataset  # noqa: E402
from fastsnn_lava.lif import run_lif_batches  # noqa: E402
from fastsnn_lava.pipeline import convert  # noqa: E402
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    ds = load_dataset(a.dataset)
    x, y = ds.x_test, ds.y_test
    rows = []
    for path in a.models:
        net = convert(path)
        q = run_batches(net, x, qann_forward).argmax(1)
        outs = {"signed IF": run_batches(net, x, snn_forward).argmax(1)}
        outs.update({f"cuba/{m}": run_lif_batches(to_cuba(net, m), x).argmax(1) for m in THRESHOLD_MODES})
        row = {"model": Path(path).name, "bits": net.bits, "qann": float((q == y).mean())}
        for k, p in outs.items():
            row[k] = {"accuracy": float((p == y).mean()), "qann_agreement": float((p == q).mean())}
        rows.append(row)
    modes = list(rows[0])[3:]
    print(f"{a.dataset}, {len(y)} test samples: accuracy (agreement with the QANN)\n")
    print("| model | b | QANN | " + " | ".join(modes) + " |")
    print("|---|---|---|" + "---|" * len(modes))
    for r in rows:
        print(f"| {r['model']} | {r['bits']} | {r['qann']:.2%} | " + " | ".join(
            f"{r[m]['accuracy']:.2%} ({r[m]['qann_agreement']:.1%})" for m in modes) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
