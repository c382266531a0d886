"""Bad input: one-line error naming the problem, exit code 2, no traceback, nothing half-written."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.netx import read_network, write_network


def cli(tool, *args):
    return subprocess.run([sys.executable, "-m", f"fastsnn_lava.cli.{tool}", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    lines = [l for l in r.stderr.strip().splitlines() if "warn" not in l.lower() and l.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_export_missing_file(tmp_path):
    out = tmp_path / "net.h5"
    r = cli("export", tmp_path / "nope.pt", "-o", out)
    assert_one_line_error(r, "no such file")
    assert not out.exists()


def test_export_not_a_checkpoint(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(os.urandom(3000))
    out = tmp_path / "net.h5"
    r = cli("export", bad, "-o", out)
    assert_one_line_error(r, "not a fastsnn-lava checkpoint")
    assert not out.exists() and not list(tmp_path.glob(".net.h5*"))


def test_run_not_a_netx_network(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    r = cli("run", bad, "--backend", "reference", "--json", tmp_path / "o.json")
    assert_one_line_error(r, "not an HDF5 file")
    assert not (tmp_path / "o.json").exists()


def test_run_hdf5_without_layers(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("foo", data=[1])
    assert_one_line_error(cli("run", p, "--backend", "reference"), "no /layer group")


def test_train_bad_arguments():
    r = cli("train", "--arch", "resnet999", "-o", "x.pt")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("tool", ["train", "export", "run", "demo"])
def test_help_has_an_example(tool):
    r = cli(tool, "--help")
    assert r.returncode == 0 and "example:" in r.stdout


def test_pickled_code_in_checkpoint_is_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pt"
    torch.save({"format": "fastsnn-lava-checkpoint", "version": 1, "payload": Evil()}, path)
    with pytest.raises(FastSNNError, match="not a fastsnn-lava checkpoint"):
        checkpoint.load(path)
    assert not marker.exists()
    r = cli("export", path, "-o", tmp_path / "net.h5")
    assert_one_line_error(r, "not a fastsnn-lava checkpoint")
    assert not marker.exists()


def _good_file(tmp_path, trained):
    from fastsnn_lava.pipeline import export
    _, _, _, model_path = trained("cnn", 2)
    p = tmp_path / "net.h5"
    export(str(model_path), str(p))
    return p


@pytest.mark.parametrize("mutation,message", [
    (lambda f: f["layer"].move("2", "9"), "numbered"),
    (lambda f: f["layer/1/type"].__setitem__(0, b"pool"), "not supported"),
    (lambda f: f["layer/1/neuron/type"].__setitem__((), "LIF_X"), "neuron type"),
    (lambda f: f["layer/1"].__delitem__("weight"), "missing key 'weight'"),
    (lambda f: f["layer/2/neuron"].__delitem__("theta"), "theta"),
    (lambda f: f.__delitem__("fastsnn"), "fastsnn"),
    (lambda f: f["fastsnn/timesteps"].write_direct(np.array(5)), "timesteps"),
    (lambda f: f["fastsnn/format_version"].write_direct(np.array(7)), "format version"),
    (lambda f: f["layer/0/shape"].write_direct(np.array([1, 8, 9])), "layer/0"),
])
def test_reader_names_layer_and_key(tmp_path, trained, mutation, message):
    p = _good_file(tmp_path, trained)
    with h5py.File(p, "r+") as f:
        mutation(f)
    with pytest.raises(FastSNNError, match=message):
        read_network(p)


def test_reader_rejects_shape_mismatch(tmp_path, trained):
    p = _good_file(tmp_path, trained)
    with h5py.File(p, "r+") as f:
        w = f["layer/2/weight"][()]
        del f["layer/2/weight"]
        f["layer/2/weight"] = w[:, :-1]
    with pytest.raises(FastSNNError, match="/layer/2"):
        read_network(p)


def test_export_refuses_all_zero_weights_and_leaves_nothing(tmp_path, trained):
    from fastsnn_lava.pipeline import convert
    _, _, _, model_path = trained("mlp", 2)
    net = convert(str(model_path))
    net.layers[1].weight[:] = 0
    out = tmp_path / "net.h5"
    with pytest.raises(FastSNNError, match="all weights are zero"):
        write_network(net, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_hardware_check_names_layer_and_limit(trained):
    from fastsnn_lava.hardware import check_network, load_target
    from fastsnn_lava.pipeline import convert
    net = convert(str(trained("mlp", 2)[3]))
    net.layers[1].weight[0, 0] = 300
    with pytest.raises(FastSNNError, match=r"layer 2 .*8-bit weights"):
        check_network(net, load_target("loihi2"))
    with pytest.raises(FastSNNError, match="unknown hardware target"):
        load_target("loihi9")


def test_interrupted_write_leaves_nothing(tmp_path, trained, monkeypatch):
    from fastsnn_lava.pipeline import convert
    net = convert(str(trained("mlp", 2)[3]))
    out = tmp_path / "net.h5"
    original = h5py.Group.create_group

    def boom(self, name, *a, **k):
        if name == "fastsnn":
            raise KeyboardInterrupt
        return original(self, name, *a, **k)
    monkeypatch.setattr(h5py.Group, "create_group", boom)
    with pytest.raises(KeyboardInterrupt):
        write_network(net, out)
    assert list(tmp_path.iterdir()) == []


def test_pickled_module_needs_trust_pickle(trained, tmp_path):
    qann = trained("mlp", 2)[0]
    path = tmp_path / "whole.pt"
    torch.save(qann, path)
    out = tmp_path / "net.h5"
    assert_one_line_error(cli("export", path, "-o", out), "--trust-pickle")
    assert not out.exists()
    r = cli("export", path, "-o", out, "--trust-pickle")
    assert r.returncode == 0, r.stderr[-1000:]
    from fastsnn_lava.convert import to_network
    assert read_network(out).equals(to_network(qann))


def test_run_refuses_out_of_range_network(trained, tmp_path):
    from fastsnn_lava.pipeline import convert
    net = convert(str(trained("mlp", 2)[3]))
    net.layers[0].weight[0, 0] = 200  # beyond 8-bit weights, still loadable by netx
    p = tmp_path / "big.h5"
    write_network(net, p)
    assert_one_line_error(cli("run", p, "--backend", "reference"), "layer 1", "8-bit weights")
    assert cli("run", p, "--backend", "reference", "--hw", "none").returncode == 0
