"""Signals end a command cleanly: SIGINT exits 130, SIGTERM 143, one line, no output, no temporary file and
no child process left behind (Lava's included)."""
import os
import signal
import subprocess
import sys
import time

import pytest


def test_sigterm_during_training_exits_143_and_leaves_no_file(tmp_path):
    out = tmp_path / "m.pt"
    p = subprocess.Popen([sys.executable, "-m", "fastsnn_lava.cli.train", "--arch", "cnn", "--epochs", "200",
                          "--qat-epochs", "0", "--no-progress", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "m.pt.resume").exists() and time.time() < deadline:  # training has begun
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    lines = [line for line in err.strip().splitlines() if "warn" not in line.lower()]
    assert p.returncode == 143 and lines == ["fastsnn-train: terminated"], err[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def _lava_run(h5, out):
    return subprocess.Popen([sys.executable, "-m", "fastsnn_lava.cli.run", str(h5), "--dataset", "digits",
                             "--backend", "lava-sim", "--samples", "360", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("sig,to_group,code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143),
                                                (signal.SIGINT, False, 130)])
def test_a_signal_during_a_lava_run_ends_it_and_every_child(trained, tmp_path, require_lava, sig, to_group, code):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM to the command while
    Lava simulates: exit 130 / 143 within seconds, one error line, and no process of the run left."""
    import psutil
    from fastsnn_lava.pipeline import export
    h5 = tmp_path / "net.h5"
    export(str(trained("cnn", 2)[3]), str(h5))
    p = _lava_run(h5, tmp_path / "o.json")
    deadline, kids = time.time() + 120, []
    while time.time() < deadline and p.poll() is None:  # Lava's runtime has forked its process models
        kids = psutil.Process(p.pid).children(recursive=True)
        if len(kids) >= 4:
            break
        time.sleep(0.2)
    assert len(kids) >= 4 and p.poll() is None, "the Lava run did not start"
    time.sleep(1)
    kids = psutil.Process(p.pid).children(recursive=True)
    t0 = time.time()
    if to_group:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code and time.time() - t0 < 10, (p.returncode, err[-1500:])
    errors = [line for line in err.splitlines() if line.startswith("fastsnn-run:")]
    assert errors == ["fastsnn-run: " + ("interrupted" if code == 130 else "terminated")], err[-1500:]
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, [k.pid for k in alive]
    assert not (tmp_path / "o.json").exists() and not list(tmp_path.glob(".*.tmp"))
