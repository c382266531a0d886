"""CIFAR-10 from the JPEG archive (no download): the loader, its hostile cases, and the whole chain
on a few hundred images from the shared file, down to Lava (issue 24, data)."""
import io
import json
import os
import tarfile

import numpy as np
import pytest

from fastsnn_lava.data import load_dataset
from fastsnn_lava.data.cifar import CLASSES, read_archive
from fastsnn_lava.errors import FastSNNError

def _jpeg(value: int, size=(32, 32)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _archive(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _small(tmp_path, per_class=2, extra=()):
    members = [(f"cifar10/{split}/{c}/{i:04d}.jpg", _jpeg(20 * k + i))
               for split in ("train", "test") for k, c in enumerate(CLASSES) for i in range(per_class)]
    return _archive(tmp_path / "c.tar.gz", members + list(extra))


def test_archive_loads_in_label_order_and_is_cached_once(tmp_path, monkeypatch):
    arc = _small(tmp_path, extra=[("../../evil.jpg", _jpeg(1)), ("cifar10/train/unicorn/0.jpg", _jpeg(2)),
                                  ("cifar10/README", b"x")])
    monkeypatch.setenv("FASTSNN_CIFAR10", str(arc))
    monkeypatch.setenv("FASTSNN_DATA", str(tmp_path / "cache"))
    ds = load_dataset("cifar10")
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32) and ds.x_train.dtype == np.uint8
    assert list(ds.y_train) == [k for k in range(10) for _ in range(2)] and ds.classes == CLASSES
    assert list(ds.y_test) == list(range(10)) * 2  # the test split interleaved: any prefix mixes the classes
    assert abs(int(ds.x_test[1, 0, 5, 5]) - 20) <= 3  # class 1's first test image comes second
    assert abs(int(ds.x_train[2, 0, 5, 5]) - 20) <= 3  # class 1's first image, red channel 20 (JPEG: ±3)
    assert not (tmp_path / "evil.jpg").exists() and not list(tmp_path.rglob("evil.jpg"))  # nothing extracted
    cached = list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))
    assert len(cached) == 1
    monkeypatch.delenv("FASTSNN_CIFAR10")  # the cache alone now serves it, identically
    again = load_dataset("cifar10")
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_interleave_takes_one_image_of_each_class_in_turn():
    from fastsnn_lava.data.cifar import interleave
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    order = interleave(y)
    assert sorted(order) == list(range(9)) and list(y[order]) == [0, 1, 2, 0, 1, 2, 0, 2, 2]
    assert list(order[:3]) == [0, 3, 5]  # within a class the archive's order is kept


@pytest.mark.parametrize("case,word", [("not 32x32", "32×32"), ("corrupt tar", "tar archive"),
                                       ("no test split", "no test"), ("not a jpeg", "not a readable jpeg"),
                                       ("missing", "no such file")])
def test_bad_cifar_source_is_one_line(tmp_path, monkeypatch, case, word):
    if case == "not 32x32":
        arc = _small(tmp_path, extra=[("cifar10/train/cat/9999.jpg", _jpeg(3, (64, 64)))])
    elif case == "corrupt tar":
        arc = tmp_path / "c.tar.gz"
        arc.write_bytes(b"\x1f\x8b" + os.urandom(500))
    elif case == "no test split":
        arc = _archive(tmp_path / "c.tar.gz", [("cifar10/train/cat/0.jpg", _jpeg(1))])
    elif case == "not a jpeg":
        arc = _small(tmp_path, extra=[("cifar10/train/cat/9999.jpg", b"GIF89a not really")])
    else:
        arc = tmp_path / "nope.tar.gz"
    monkeypatch.setenv("FASTSNN_CIFAR10", str(arc))
    monkeypatch.setenv("FASTSNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(FastSNNError, match=f"(?i){word}"):
        load_dataset("cifar10")
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_tiny_cnn_on_real_cifar10_images_trains_exports_and_runs_on_lava(tmp_path, monkeypatch, require_lava,
                                                                         cifar10_archive):
    """The shared JPEG archive through --dataset cifar10: 500 training images, 1 + 1 epochs, then export
    and Lava on 8 test images, Lava = reference. (The accuracy of so short a run is not asserted.)"""
    from fastsnn_lava.cli import export, run, train
    monkeypatch.setenv("FASTSNN_CIFAR10", str(cifar10_archive))
    monkeypatch.setenv("FASTSNN_DATA", str(tmp_path / "cache"))  # the decoded arrays: not in the user's cache
    model, h5, out = tmp_path / "c.pt", tmp_path / "c.h5", tmp_path / "o.json"
    assert train.main(["--dataset", "cifar10", "--arch", "cnn", "--bits", "2", "--epochs", "1", "--qat-epochs", "1",
                       "--train-samples", "500", "--threads", "1", "--no-progress", "-o", str(model)]) == 0
    assert export.main([str(model), "-o", str(h5)]) == 0
    assert run.main([str(h5), "--dataset", "cifar10", "--backend", "lava-sim", "--samples", "8", "--json", str(out),
                     "--no-progress"]) == 0
    rec = json.loads(out.read_text())
    assert rec["samples"] == 8 and rec["reference_agreement"] == 1.0 and rec["first_difference"] is None
    from fastsnn_lava import checkpoint
    meta = checkpoint.load(model)[2]
    assert meta["train_samples"] == 500 and meta["dataset"] == "cifar10" and meta["test_samples"] == 10000


CIFAR_RESNET = "benchmarks/models/cifar_resnet.py"  # relative to the repository root


def test_the_cifar_resnet_converts_exactly_with_raw_padding_and_is_refused_as_published(repository_file):
    """benchmarks/models/cifar_resnet.py (option-A shortcuts, normalisation in forward): padding the raw image
    before normalising folds exactly; the published layout (the first conv pads the normalised image) is refused."""
    import torch
    from fastsnn_lava.fx import convert
    cr = repository_file(CIFAR_RESNET)
    torch.manual_seed(0)
    model = cr.resnet(8).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    c = convert(model, (3, 32, 32))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-4)
    assert c.spec[0]["padding"] == 1 and len(c.spec) == 8  # stem + 3 blocks × 2 convs + classifier
    published = cr.resnet(8, pad="normalised")
    published.load_state_dict(model.state_dict())
    with pytest.raises(FastSNNError, match="padded Conv2d 'conv1' on the normalised input"):
        convert(published.eval(), (3, 32, 32))


def test_cifar_resnet_with_distillation_trains_and_exports(tmp_path, monkeypatch, cifar10_archive):
    """The README's CIFAR-10 recipe in miniature: the CIFAR ResNet-8 of benchmarks/models as --model, 300 real
    images, 1 float + 1 distilled QAT epoch, exported (export checks the file against the integer network)."""
    from fastsnn_lava.cli import export, train
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / CIFAR_RESNET
    monkeypatch.setenv("FASTSNN_CIFAR10", str(cifar10_archive))
    monkeypatch.setenv("FASTSNN_DATA", str(tmp_path / "cache"))
    import dataclasses
    from fastsnn_lava import pipeline
    whole = pipeline.load_dataset
    monkeypatch.setattr(pipeline, "load_dataset", lambda name: (lambda ds: dataclasses.replace(
        ds, x_test=ds.x_test[:200], y_test=ds.y_test[:200]))(whole(name)))  # 200 test images: the test's time
    model, h5 = tmp_path / "r.pt", tmp_path / "r.h5"
    assert train.main(["--dataset", "cifar10", "--model", f"{path}:resnet", "--model-args", '{"depth": 8}',
                       "--bits", "2", "--epochs", "1", "--qat-epochs", "1", "--distill", "0.5", "--train-samples",
                       "300", "--threads", "1", "--no-progress", "-o", str(model)]) == 0
    assert export.main([str(model), "-o", str(h5)]) == 0 and h5.stat().st_size > 0
    from fastsnn_lava import checkpoint
    meta = checkpoint.load(model)[2]
    assert meta["distill"] == 0.5 and meta["train_samples"] == 300 and meta["spec"][0]["padding"] == 1
    assert meta["test_samples"] == 200


def test_training_chain_stages_repeat_a_bit_width_with_their_own_settings(tmp_path, monkeypatch, capsys,
                                                                          repository_file):
    """``--bits 3,2,2``: each QAT stage starts from the one before, with its own epochs, lr and distillation;
    only the last 2-bit stage writes the table's ``_b2.pt``. Bad per-stage lists are one line, exit 2."""
    from pathlib import Path
    script, calls = repository_file("scripts/train_cifar10.py"), []

    def stage(out, resume, **kw):
        calls.append((out.name, kw))
        return {"float_test_accuracy": 0.5, "qann_test_accuracy": 0.4, "train_seconds": 1.0}

    monkeypatch.setattr(script, "stage", stage)
    monkeypatch.chdir(tmp_path)  # main() moves to the repository root: restored afterwards
    argv = ["train_cifar10.py", "--net", "cnn5", "--bits", "3,2,2", "--qat-epochs", "3,10,30", "--qat-lr", "0.0005",
            "--distill", "0.5,0.5,0.9", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    script.main()
    names = [name for name, _ in calls]
    assert names == ["cifar10_cnn5_float.pt", "cifar10_cnn5_b3.pt", "cifar10_cnn5_b2_stage2.pt", "cifar10_cnn5_b2.pt"]
    assert [Path(kw["init"]).name for _, kw in calls[1:]] == names[:-1]
    assert [(kw["bits"], kw["qat_epochs"], kw["qat_lr"], kw["distill"]) for _, kw in calls[1:]] == [
        (3, 3, 0.0005, 0.5), (2, 10, 0.0005, 0.5), (2, 30, 0.0005, 0.9)]
    for flag, value, word in (("--distill", "0.5,0.9", "2 values for 3 stages"), ("--qat-lr", "1e-3,x,1", "numbers")):
        monkeypatch.setattr("sys.argv", argv + [flag, value])
        with pytest.raises(SystemExit) as e:
            script.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and word in err and err.count("\n") == 1


def test_training_chain_refuses_a_finished_or_interrupted_stage_trained_with_other_settings(tmp_path, monkeypatch,
                                                                                           capsys, repository_file):
    """A stage whose checkpoint (or resume file) exists is skipped (or continued) only when it was trained
    with the settings the command asks for: after ``--bits 3,2,2`` became ``3,2,2,2``, the old ``_b2.pt``
    (the third stage's) would otherwise pass silently as the fourth stage. A mismatch is one line, exit 2."""
    import fastsnn_lava.checkpoint as checkpoint
    import fastsnn_lava.resume as resume
    script = repository_file("scripts/train_cifar10.py")

    def no_training(**kw):
        raise AssertionError("a stage on disk must not be trained again")

    monkeypatch.setattr(script, "train", no_training)
    recorded = dict(dataset="cifar10", bits=2, seed=0, batch_size=128, epochs=0, qat_epochs=30, distill=0.9,
                    qat_lr=0.0005, init_from="build/m/cifar10_cnn5_b2_stage2.pt", qann_test_accuracy=0.8)
    monkeypatch.setattr(checkpoint, "load", lambda path: (None, None, dict(recorded)))
    out, res = tmp_path / "cifar10_cnn5_b2.pt", tmp_path / "cifar10_cnn5_b2.pt.resume"
    out.write_bytes(b"")
    asked = dict(dataset="cifar10", bits=2, seed=0, batch_size=128, qat_epochs=30, distill=0.9, qat_lr=0.0005,
                 init=str(tmp_path / "cifar10_cnn5_b2_stage2.pt"), arch="cnn5", threads=2)
    assert script.stage(out, res, **asked)["qann_test_accuracy"] == 0.8  # same settings: skipped
    for key, value in (("qat_epochs", 20), ("distill", 0.5), ("init", str(tmp_path / "cifar10_cnn5_b2_stage3.pt"))):
        with pytest.raises(SystemExit) as e:
            script.stage(out, res, **{**asked, key: value})
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and out.name in err and "move it aside" in err, err
    del recorded["qat_lr"]  # a checkpoint of older code, which did not record it: not held against it
    assert script.stage(out, res, **{**asked, "qat_lr": 0.001})["qann_test_accuracy"] == 0.8
    out.unlink()
    res.write_bytes(b"")
    config = dict(recorded, init=recorded.pop("init_from"), lr=0.002, qat_lr=0.0005)
    monkeypatch.setattr(resume, "load", lambda path: {"config": config})
    with pytest.raises(SystemExit) as e:
        script.stage(out, res, **{**asked, "qat_epochs": 20})
    err = capsys.readouterr().err
    assert e.value.code == 2 and res.name in err and "qat_epochs" in err, err


def test_training_chain_refuses_a_stage_file_that_is_not_one_in_one_line(tmp_path, monkeypatch, capsys,
                                                                        repository_file):
    """A junk file where a stage's checkpoint or resume file should be: one line naming it, exit 2, no traceback."""
    script = repository_file("scripts/train_cifar10.py")
    monkeypatch.setattr(script, "train", lambda **kw: pytest.fail("nothing may be trained"))
    monkeypatch.chdir(tmp_path)
    for name in ("cifar10_cnn5_float.pt", "cifar10_cnn5_float.pt.resume"):
        junk = tmp_path / name
        junk.write_bytes(b"\x00not a checkpoint")
        monkeypatch.setattr("sys.argv", ["train_cifar10.py", "--net", "cnn5", "--out", str(tmp_path)])
        with pytest.raises(SystemExit) as e:
            script.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and name in err and "Traceback" not in err, err
        junk.unlink()
