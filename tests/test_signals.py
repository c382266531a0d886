"""SIGTERM ends a command cleanly: exit 143, one line, no output and no temporary file left behind."""
import signal
import subprocess
import sys
import time


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
