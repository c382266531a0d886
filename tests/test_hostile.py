"""Hostile and careless inputs (issue 22, item 5): each ends in exit 2 with one line naming the problem,
never exit 1, a traceback, a hang, a leftover temporary file or a modified input.

Every case is one representative of a class: a declared size far beyond what the file holds, a value
of the wrong type or range, a link that leads elsewhere, a file that is not a regular file.
"""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from fastsnn_lava.cli import diagnose, export, report, run, train
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.hardware import load_target


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    """A good checkpoint and its net.h5 (mlp, b = 2), and a second checkpoint of another network."""
    from fastsnn_lava.pipeline import export as export_fn
    d = tmp_path_factory.mktemp("hostile")
    model = d / "mlp.pt"
    shutil.copy(trained("mlp", 2)[3], model)
    export_fn(str(model), str(d / "net.h5"))
    other = d / "cnn.pt"
    shutil.copy(trained("cnn", 2)[3], other)
    return {"model": model, "net": d / "net.h5", "other": other, "dir": d}


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def _refused(code, capsys, *words):
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and "warn" not in line.lower()]
    assert code == 2 and len(err) == 1, (code, err)
    assert "Traceback" not in err[0] and "internal error" not in err[0], err[0]
    for w in words:
        assert w.lower() in err[0].lower(), err[0]
    return err[0]


def _net_copy(files, tmp_path, name, edit):
    path = tmp_path / name
    shutil.copy(files["net"], path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f, key, value):
    del f[key]
    f[key] = value


NETX_CASES = {
    "huge declared weight": (lambda f: (f["layer/1"].__delitem__("weight"),
                                        f["layer/1"].create_dataset("weight", shape=(100000, 100000), dtype="i8")),
                             "declares 10,000,000,000 values"),
    "meta is a list": (lambda f: _replace(f, "fastsnn/meta", json.dumps([1, 2])), "must be a json object"),
    "meta nested 10,000 deep": (lambda f: _replace(f, "fastsnn/meta", "[" * 10000 + "]" * 10000), "nested too deep"),
    "soft-link loop": (lambda f: (f["layer/1"].__setitem__("loop", h5py.SoftLink("/layer/1/loop")),
                                  _replace(f, "layer/1/bias", h5py.SoftLink("/layer/1/loop"))), "soft link"),
    "external link": (lambda f: _replace(f, "layer/1/weight", h5py.ExternalLink("other.h5", "/layer/1/weight")),
                      "external link"),
    "input_shape 2-D": (lambda f: _replace(f, "fastsnn/input_shape", np.array([[64]])), "input_shape"),
    "stride 0": None,  # filled below for a conv network
}


@pytest.mark.parametrize("case", [c for c in NETX_CASES if NETX_CASES[c]])
def test_hostile_netx_file_is_one_line_for_every_reader(files, tmp_path, capsys, case):
    edit, words = NETX_CASES[case]
    shutil.copy(files["net"], tmp_path / "other.h5")
    path = _net_copy(files, tmp_path, "net.h5", edit)
    before = _digests(tmp_path)
    _refused(run.main([str(path), "--dataset", "digits", "--no-progress"]), capsys, words)
    _refused(report.main([str(path), "--dataset", "digits"]), capsys, words)
    assert _digests(tmp_path) == before and not list(tmp_path.glob(".*.tmp"))


def test_stride_zero_is_refused(trained, tmp_path, capsys):
    from fastsnn_lava.pipeline import export as export_fn
    path = tmp_path / "cnn.h5"
    export_fn(str(trained("cnn", 2)[3]), str(path))
    with h5py.File(path, "r+") as f:
        _replace(f, "layer/1/stride", np.array([0, 0]))
    _refused(run.main([str(path), "--dataset", "digits"]), capsys, "stride")


@pytest.mark.parametrize("tool", ["run", "report", "export"])
def test_a_fifo_as_the_input_file_is_refused_not_waited_on(files, tmp_path, tool):
    fifo = tmp_path / "net.h5"
    os.mkfifo(fifo)
    args = {"run": [fifo, "--dataset", "digits"], "report": [fifo], "export": [fifo, "-o", tmp_path / "o.h5"]}[tool]
    r = subprocess.run([sys.executable, "-m", f"fastsnn_lava.cli.{tool}", *map(str, args)], capture_output=True,
                       text=True, timeout=60)
    lines = [line for line in r.stderr.strip().splitlines() if "warn" not in line.lower()]
    assert r.returncode == 2 and len(lines) == 1 and "fifo" in lines[0].lower(), r.stderr[-800:]


def _hw(tmp_path, edit):
    cfg = yaml.safe_load(open(load_target("loihi2")["path"]))
    edit(cfg)
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


HW_CASES = {
    "missing key": (lambda c: c["limits"].pop("weight_bits"), "weight_bits"),
    "negative core count": (lambda c: c["limits"]["cores_per_chip"].update(value=-4), "cores_per_chip"),
    "string value": (lambda c: c["limits"]["state_bits"].update(value="24 bits"), "state_bits"),
    "absurd bit width": (lambda c: c["limits"]["weight_bits"].update(value=10 ** 6), "weight_bits"),
    "entry without value": (lambda c: c["limits"].update(bias_bits="13"), "bias_bits"),
    "cost is nan": (lambda c: c["costs"]["energy_per_synop_pj"].update(value=float("nan")), "energy_per_synop_pj"),
    "not a mapping": (lambda c: c.clear(), "hardware config"),
}


@pytest.mark.parametrize("case", sorted(HW_CASES))
def test_bad_hardware_config_is_one_line(files, tmp_path, capsys, case):
    edit, word = HW_CASES[case]
    hw = _hw(tmp_path, edit)
    out = tmp_path / "o.h5"
    _refused(export.main([str(files["model"]), "-o", str(out), "--hw", str(hw)]), capsys, word)
    _refused(run.main([str(files["net"]), "--dataset", "digits", "--hw", str(hw)]), capsys, word)
    assert not out.exists()


@given(value=st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20), st.floats(allow_nan=True),
                       st.text(max_size=5), st.lists(st.integers(), max_size=3)),
       key=st.sampled_from(["weight_bits", "threshold_bits", "bias_bits", "state_bits", "neurons_per_core",
                            "cores_per_chip"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_limit_value_loads_or_is_our_error(tmp_path, key, value):
    hw = _hw(tmp_path, lambda c: c["limits"][key].update(value=value))
    try:
        target = load_target(str(hw))
    except FastSNNError:
        return
    v = target["limits"][key]
    assert isinstance(v, bool) or (isinstance(v, int) and 0 <= v <= 2 ** 40)


def _idx_dir(tmp_path, images: bytes, gz=True):
    d = tmp_path / "idx"
    d.mkdir()
    labels = b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + bytes([0, 1, 2, 0])
    good = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (4, 8, 8)) + bytes(256)
    for part in ("train", "t10k"):
        for stem, data in ((f"{part}-images-idx3-ubyte", images if part == "train" else good),
                           (f"{part}-labels-idx1-ubyte", labels)):
            (d / (stem + ".gz")).write_bytes(gzip.compress(data) if gz else data)
    return d


DATA_CASES = {
    "corrupt gzip": lambda tmp: _corrupt_gzip(_idx_dir(tmp, b"\x00\x00\x08\x03" + bytes(268))),
    "IDX header declaring 2^31 items": lambda tmp: _idx_dir(
        tmp, b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (2 ** 31, 1, 1)) + bytes(64)),
    "gzip bomb": lambda tmp: _idx_dir(
        tmp, b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (4, 8, 8)) + bytes(2 ** 26)),
}


def _corrupt_gzip(d):
    p = d / "train-images-idx3-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[20:30] = b"\xff" * 10
    p.write_bytes(bytes(raw))
    return d


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_hostile_idx_data_is_one_line(tmp_path, capsys, case):
    d = DATA_CASES[case](tmp_path)
    out = tmp_path / "m.pt"
    _refused(train.main(["--dataset", f"idx:{d}", "--arch", "mlp", "--epochs", "0", "--qat-epochs", "0",
                         "-o", str(out)]), capsys, "train-images-idx3-ubyte")
    assert not out.exists()


def test_decompression_bomb_png_is_one_line(tmp_path, capsys, datagen):
    from PIL import Image
    root = datagen.imagefolder(tmp_path / "pics", n_per_class=3, channels=1, split=False)
    bomb = next((root / "cat").iterdir())
    Image.new("L", (20000, 20000)).save(bomb, optimize=True)  # 400 M pixels in a ~400 KB file
    assert bomb.stat().st_size < 2 ** 21
    _refused(train.main(["--dataset", f"imagefolder:{root}", "--arch", "mlp", "--epochs", "0", "--qat-epochs", "0",
                         "-o", str(tmp_path / "m.pt")]), capsys, bomb.name)


INPUT_CASES = {
    "empty": (lambda: np.zeros((0, 64), dtype=np.int64), "no samples"),
    "npz": (None, "npz"),
    "nan": (lambda: np.full((2, 64), np.nan), "integer inputs"),
    "negative": (lambda: -np.ones((2, 64), dtype=np.int64), "range"),
    "above the input range": (lambda: np.full((2, 64), 10 ** 6, dtype=np.int64), "range"),
    "object array": (lambda: np.array([[None] * 64] * 2, dtype=object), "not a numpy .npy"),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_bad_input_array_is_one_line(files, tmp_path, capsys, case):
    make, word = INPUT_CASES[case]
    path = tmp_path / ("x.npz" if make is None else "x.npy")
    if make is None:
        np.savez(path, a=np.zeros((2, 64)), b=np.zeros(3))
    else:
        np.save(path, make(), allow_pickle=True)
    _refused(report.main([str(files["net"]), "--input", str(path)]), capsys, word)


def _checkpoint(files, tmp_path, edit):
    blob = torch.load(files["model"], weights_only=True)
    edit(blob)
    path = tmp_path / "m.pt"
    torch.save(blob, path)
    return path


def _meta(key, value):
    def edit(blob):
        meta = json.loads(blob["meta"])
        meta[key] = value
        blob["meta"] = json.dumps(meta)
    return edit


def _inf_weight(blob):
    name = next(k for k in blob["qann"] if k.endswith("weight"))
    blob["qann"][name][0] = float("inf")


def _float_snn(blob):
    blob["snn"] = {"weight": [torch.full((2, 2), 0.5)], "bias": [torch.zeros(2)]}


CKPT_CASES = {
    "input_max 0": (_meta("input_max", 0), "input_max"),
    "input_max a string": (_meta("input_max", "255"), "input_max"),
    "huge input shape": (_meta("input_shape", [1, 100000, 100000]), "input_shape"),
    "bits 40": (_meta("bits", 40), "bits"),
    "inf weights": (_inf_weight, "non-finite"),
    "float codes in its SNN": (_float_snn, "integer codes"),
}


@pytest.mark.parametrize("case", sorted(CKPT_CASES))
def test_hostile_checkpoint_is_one_line(files, tmp_path, capsys, case):
    edit, word = CKPT_CASES[case]
    path = _checkpoint(files, tmp_path, edit)
    out = tmp_path / "o.h5"
    _refused(export.main([str(path), "-o", str(out)]), capsys, word)
    _refused(diagnose.main([str(path), "--dataset", "digits", "--samples", "5"]), capsys, word)
    assert not out.exists()


def test_model_of_another_network_is_refused(files, capsys):
    _refused(run.main([str(files["net"]), "--dataset", "digits", "--model", str(files["other"]), "--no-progress"]),
             capsys, "not the checkpoint")


def test_a_zlib_error_inside_gzip_is_ours(tmp_path):
    """``zlib.error`` is not an OSError: the IDX reader must still turn it into one line."""
    from fastsnn_lava.data.idx import read_idx
    p = tmp_path / "x.gz"
    raw = bytearray(gzip.compress(b"\x00\x00\x08\x01" + (1000).to_bytes(4, "big") + os.urandom(1000)))
    raw[12:40] = os.urandom(28)
    p.write_bytes(bytes(raw))
    with pytest.raises(FastSNNError):
        read_idx(p)
    assert issubclass(zlib.error, Exception) and not issubclass(zlib.error, OSError)
