"""Benchmark 6 — peak memory of the reference engine and of a Lava run, each in a fresh subprocess.

The child (``python -m benchmarks.memory engine|lava ARCH N``) loads the network and the test
set, runs, and reports its own ``ru_maxrss``. The parent samples the child's whole process tree
every 50 ms (Lava forks one OS process per layer) and keeps the peak of the summed PSS
(proportional set size: shared pages counted once in total) and of the summed RSS.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ARCHS, FULL, REPEATS, ROOT

LAVA_SAMPLES = {"mlp": 500, "cnn5": 500 if FULL else 100}


def _tree(pid: int) -> list[int]:
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(args: list[str]) -> dict:
    """Peak memory (MiB) of ``python -m benchmarks.memory ARGS`` and of its process tree."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.memory", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_kib(p, "smaps_rollup", "Pss:") for p in pids))
        peak_rss = max(peak_rss, sum(_kib(p, "status", "VmRSS:") for p in pids))
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"memory child {args} failed with exit code {proc.returncode}")
    child = json.loads(out.strip().splitlines()[-1])
    return dict(child, tree_peak_pss_mib=peak_pss / 1024, tree_peak_rss_mib=peak_rss / 1024)


def run() -> dict:
    import statistics
    res = {}
    for key, args in (("engine_cnn5_full_test_set", ["engine", "cnn5", "0"]),
                      ("lava_mlp", ["lava", "mlp", str(LAVA_SAMPLES["mlp"])]),
                      ("lava_cnn5", ["lava", "cnn5", str(LAVA_SAMPLES["cnn5"])])):
        if args[1] not in ARCHS:
            continue
        runs = [measure(args) for _ in range(REPEATS if args[0] == "engine" else 1)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
        res[key] = dict(med, runs=len(runs))
    return res


def _child(mode: str, arch: str, n: int) -> None:
    import tempfile

    from benchmarks.common import network, test_set
    net, _ = network(arch)
    x, _ = test_set(n or None)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "engine":
        from fastsnn_lava.engine import Engine
        eng = Engine(net)
        out = eng.run(x)
        extra = {"batch_size": eng.batch_size()}
    else:
        from fastsnn_lava.lava.runner import run_lava
        from fastsnn_lava.netx import write_network
        with tempfile.TemporaryDirectory() as tmp:
            write_network(net, Path(tmp) / "net.h5")
            out, _ = run_lava(Path(tmp) / "net.h5", x, progress=False)
        extra = {}
    print(json.dumps(dict(extra, mode=mode, arch=arch, samples=len(out), seconds=time.perf_counter() - t0,
                          baseline_maxrss_mib=base,
                          self_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
