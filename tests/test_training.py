"""Training features: new datasets end to end, progressive precision (--init), --resume, torchrun."""
import json
import os
import subprocess
import sys

import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.pipeline import evaluate, export, train


def cli(tool, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", f"fastsnn_lava.cli.{tool}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    lines = [line for line in r.stderr.strip().splitlines() if line.strip() and "warn" not in line.lower()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_imagefolder_rgb_trains_exports_and_runs(tmp_path, datagen):
    """Colour images (mean/std folded into a padded first convolution) → net.h5 → reference SNN:
    the exported QANN scores exactly what training measured."""
    root = datagen.imagefolder(tmp_path / "pics", n_per_class=12, channels=3)
    name = f"imagefolder:{root}"
    model, net = tmp_path / "m.pt", tmp_path / "net.h5"
    _, _, meta = train(name, "cnn", 2, str(model), epochs=4, qat_epochs=2, progress=False)
    assert len(checkpoint.load(model)[2]["norm"]["mean"]) == 3
    export(str(model), str(net))
    res = evaluate(str(net), name, "reference", model_path=str(model), progress=False)
    assert res["samples"] == 12 and res["qann_accuracy"] == meta["qann_test_accuracy"]
    assert res["qann_accuracy"] > 0.6 and res["ann_accuracy"] == meta["float_test_accuracy"]
    assert not (tmp_path / "m.pt.resume").exists()


def test_idx_folder_through_the_command_line(tmp_path, datagen):
    root = datagen.idx_folder(tmp_path / "idx", n_per_class=20)
    model, net, out = tmp_path / "m.pt", tmp_path / "net.h5", tmp_path / "out.json"
    r = cli("train", "--dataset", f"idx:{root}", "--arch", "mlp", "--epochs", 3, "--qat-epochs", 2,
            "--no-progress", "-o", model)
    assert r.returncode == 0, r.stderr[-2000:]
    assert cli("export", model, "-o", net).returncode == 0
    r = cli("run", net, "--dataset", f"idx:{root}", "--backend", "reference", "--json", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    res, meta = json.loads(out.read_text()), checkpoint.load(model)[2]
    assert res["samples"] == 18 and res["qann_accuracy"] == meta["qann_test_accuracy"] > 0.6
    one_line_error(cli("run", net, "--dataset", f"idx:{tmp_path / 'nope'}", "--backend", "reference"),
                   "not a folder")


def test_progressive_precision_from_a_2_bit_checkpoint(trained, tmp_path):
    q2, f2, meta2, path2 = trained("mlp", 2)
    q1, f1, meta1 = train("digits", "mlp", 1, str(tmp_path / "m1.pt"), qat_epochs=2, progress=False,
                          init=str(path2))
    assert meta1["bits"] == 1 and meta1["init_bits"] == 2 and meta1["init_alpha"] in ("kept", "recalibrated")
    assert all(torch.equal(f1.state_dict()[k], f2.state_dict()[k]) for k in f2.state_dict())  # no float phase
    assert meta1["float_test_accuracy"] == meta2["float_test_accuracy"]
    assert meta1["qann_test_accuracy_after_calibration"] > 0.5 and meta1["qann_test_accuracy"] > 0.8
    _, _, saved = checkpoint.load(tmp_path / "m1.pt")
    assert saved["bits"] == 1 and saved["init_from"] == str(path2)


def test_init_must_match_arch_and_dataset(trained, tmp_path):
    *_, path2 = trained("mlp", 2)
    one_line_error(cli("train", "--arch", "cnn", "--bits", 1, "--init", path2, "-o", tmp_path / "x.pt"),
                   "same --arch and --dataset")
    with pytest.raises(FastSNNError, match="on digits, this run is mlp on fashion-mnist"):
        train("fashion-mnist", "mlp", 1, None, init=str(path2))
    assert not (tmp_path / "x.pt").exists()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("stop_at", [("float", 1), ("qat", 1)])
def test_resume_repeats_the_uninterrupted_run(tmp_path, stop_at):
    """Interrupted after an epoch, then resumed: bit-identical to training straight through
    (batch order, Adam and cosine states come from the resume file; same thread count)."""
    kw = dict(dataset="digits", arch="mlp", bits=2, epochs=2, qat_epochs=2, seed=3, progress=False)
    qa, fa, _ = train(out=str(tmp_path / "a.pt"), **kw)

    def stop(phase, epoch):
        if (phase, epoch) == stop_at:
            raise _Stop
    with pytest.raises(_Stop):
        train(out=str(tmp_path / "b.pt"), on_epoch=stop, **kw)
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "b.pt.resume").exists()
    qb, fb, meta = train(out=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt.resume"),
                         **dict(kw, epochs=99, arch="cnn"))  # the resume file's settings win
    assert meta["arch"] == "mlp" and not (tmp_path / "b.pt.resume").exists()
    for a, b in ((qa, qb), (fa, fb)):
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_resume_rejects_other_files(tmp_path):
    junk = tmp_path / "junk.resume"
    junk.write_bytes(os.urandom(500))
    one_line_error(cli("train", "--resume", junk, "-o", tmp_path / "m.pt"), "not a fastsnn-lava resume file")
    one_line_error(cli("train", "--resume", tmp_path / "none.resume", "-o", tmp_path / "m.pt"), "no such file")


def test_torchrun_two_processes_on_cpu(tmp_path):
    """2 processes (gloo), DistributedDataParallel, 1 epoch each phase: a valid checkpoint whose
    ranks ended with identical parameters and buffers."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    model = tmp_path / "m.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "fastsnn_lava.train", "--arch", "mlp",
                        "--epochs", "1", "--qat-epochs", "1", "--no-progress", "-o", str(model)],
                       capture_output=True, text=True, timeout=170, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("-> ") == 1  # rank 0 alone reports
    _, _, meta = checkpoint.load(model)
    assert meta["world_size"] == 2 and meta["ranks_identical"] is True and meta["qann_test_accuracy"] > 0.5
    assert not (tmp_path / "m.pt.resume").exists()
