"""Export checkpoints (signed IF and CUBA) and write their hardware reports (JSON + PNG).

For each model.pt: ``<out>/<stem>.h5`` (signed IF, the default export) and ``<stem>_cuba.h5``
(``--neuron cuba``), each with ``fastsnn-report``'s ``.json`` and ``.png`` beside it. The
committed Fashion-MNIST reports (``benchmarks/results/hardware/``; the ``.h5`` files are not kept)::

    .venv/bin/python scripts/hardware_reports.py build/models/fashion_cnn5_b2_ft_mismatch.pt \
        build/models/fashion_resnet8_b2_ft_mismatch.pt --dataset fashion-mnist --out benchmarks/results/hardware

Usage: .venv/bin/python scripts/hardware_reports.py model.pt [...] [--dataset digits] [--out build/reports]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastsnn_lava.tables import report_summary  # noqa: E402
from fastsnn_lava.errors import FastSNNError  # noqa: E402
from fastsnn_lava.pipeline import export, report  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--out", default="build/reports")
    ap.add_argument("--hw", default="loihi2")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for model in a.models:
        for neuron, suffix in (("signed", ""), ("cuba", "_cuba")):
            stem = out / f"{Path(model).stem}{suffix}"
            try:
                export(model, f"{stem}.h5", neuron=neuron, hw=a.hw)
            except FastSNNError as e:  # e.g. --neuron cuba on a residual network: say so, report the rest
                print(f"{model}, --neuron {neuron}: not reported: {e}", flush=True)
                continue
            rec = report(f"{stem}.h5", a.dataset, hw=a.hw, json_path=f"{stem}.json", plot_path=f"{stem}.png")
            print(report_summary(rec) + "\n", flush=True)


if __name__ == "__main__":
    main()
