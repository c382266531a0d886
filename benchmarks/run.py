"""Run the benchmarks and write benchmarks/results/<name>.json, then the README table.

    python -m benchmarks.run                 # reduced (≤ 30 min on 2 cores, training included)
    FULL=1 python -m benchmarks.run          # full test sets, longer runs
    python -m benchmarks.run throughput      # only some

Models: ``$FASTSNN_BENCH_CNN`` / ``$FASTSNN_BENCH_MLP`` (checkpoints of cnn5 / mlp on
Fashion-MNIST), else a short training cached in build/bench/models/.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

from benchmarks.common import ARCHS, FULL, RESULTS, ROOT, model_path, write_result

ORDER = ["throughput", "accuracy_vs_t", "lava_cost", "training", "finetune", "export_cost", "memory"]


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ORDER
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        print(f"unknown benchmark(s) {unknown}: choose from {ORDER}", file=sys.stderr)
        return 2
    t_all = time.time()
    for arch in ARCHS:
        model_path(arch)
    failed = []
    for name in names:
        t0, load0 = time.time(), round(os.getloadavg()[0], 2)  # before: what else was running, not our own Lava processes
        print(f"[bench] {name} ({'full' if FULL else 'reduced'}) …", flush=True)
        try:
            data = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as e:  # noqa: BLE001 - one failing benchmark must not hide the others
            print(f"[bench] {name} FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        path = write_result(name, dict(data, wall_seconds=round(time.time() - t0, 1), load_average_before=load0))
        print(f"[bench] {name}: {time.time() - t0:.0f} s → {path}", flush=True)
    if RESULTS == ROOT / "benchmarks" / "results":  # $BENCH_RESULTS elsewhere: a trial run, README untouched
        subprocess.run([sys.executable, str(ROOT / "scripts" / "update_bench_table.py")], check=False)
    print(f"[bench] done in {time.time() - t_all:.0f} s" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
