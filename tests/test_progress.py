"""Quiet logs outside a terminal (fastsnn_lava.progress) and thread-count-independent training."""
import io
import os
import subprocess
import sys

import pytest
import torch

from fastsnn_lava import progress
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.runtime import cpu_threads


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_outside_a_terminal_a_bar_logs_start_and_end_lines_only(monkeypatch):
    monkeypatch.delenv("FASTSNN_PROGRESS", raising=False)
    log = io.StringIO()
    b = progress.bar(range(5000), desc="work", leave=False, file=log)
    for i in b:
        b.set_postfix(loss=f"{i:.3f}")  # a redraw per update in a terminal; nothing extra here
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and lines[-1] == ""
    assert len(lines) - 1 == 2 and lines[0].startswith("work:   0%") and "5000/5000" in lines[1]


def test_outside_a_terminal_at_most_one_line_per_tenth_of_the_work(monkeypatch):
    monkeypatch.delenv("FASTSNN_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)  # time no object: the share of the work still is
    log = io.StringIO()
    with progress.bar(total=1000, desc="steps", file=log) as b:
        for _ in range(1000):
            b.update(1)
    n = log.getvalue().count("\n")
    assert 3 <= n <= progress.LOG_STEPS + 2, log.getvalue()


def test_in_a_terminal_the_bar_redraws_in_place(monkeypatch):
    monkeypatch.delenv("FASTSNN_PROGRESS", raising=False)
    tty = _Tty()
    for _ in progress.bar(range(3), desc="t", file=tty, mininterval=0):
        pass
    assert "\r" in tty.getvalue()
    monkeypatch.setenv("FASTSNN_PROGRESS", "lines")  # the override beats the terminal check
    assert not progress.interactive(tty) and progress.interactive(io.StringIO()) is False
    monkeypatch.setenv("FASTSNN_PROGRESS", "bar")
    assert progress.interactive(io.StringIO())


def test_cpu_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with cpu_threads(0):
            pass


_TRAIN = """
import sys, torch
from fastsnn_lava.pipeline import train
q, f, meta = train("digits", "cnn", 2, sys.argv[1], epochs=1, qat_epochs=1, seed=3, progress=False, threads=1)
assert meta["threads"] == 1
"""


def test_a_pinned_training_is_the_same_at_any_omp_thread_count(tmp_path):
    """``threads=1`` (the demo's setting): one seeded run, bit for bit, at OMP_NUM_THREADS 1 and 2."""
    states = []
    for n in (1, 2):
        out = tmp_path / f"m{n}.pt"
        env = dict(os.environ, OMP_NUM_THREADS=str(n), CUDA_VISIBLE_DEVICES="")
        r = subprocess.run([sys.executable, "-c", _TRAIN, str(out)], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        states.append(torch.load(out, weights_only=False))
    for part in ("qann", "float"):
        a, b = states[0][part], states[1][part]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part


def test_threads_below_one_is_refused(tmp_path):
    from fastsnn_lava.pipeline import train
    with pytest.raises(FastSNNError, match="--threads"):
        train("digits", "mlp", 2, str(tmp_path / "m.pt"), epochs=0, qat_epochs=0, threads=0, progress=False)
    assert not (tmp_path / "m.pt").exists()
