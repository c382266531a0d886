"""Bring your own model: ``fastsnn-train --model FILE.py:FUNCTION`` (tests/models/my_net.py) trains a
user's CNN through torch.fx into an ordinary checkpoint that fastsnn-export and fastsnn-run take
unchanged, ``--weights`` starts it from a saved state_dict, and every careless or hostile input is
one line, exit 2, with nothing written."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from fastsnn_lava import checkpoint, user_model
from fastsnn_lava.cli import export, run, train
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.netx import read_network

MODELS = Path(__file__).resolve().parent / "models"
MY_NET = str(MODELS / "my_net.py")
QUICK = ["--dataset", "digits", "--bits", "2", "--threads", "1", "--no-progress"]


def _train(out, *extra) -> int:
    return train.main([*QUICK, *extra, "-o", str(out)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """my_net.build(width=4) trained for one float and one QAT epoch by fastsnn-train: its checkpoint."""
    out = tmp_path_factory.mktemp("user") / "model.pt"
    assert _train(out, "--model", f"{MY_NET}:build", "--model-args", '{"width": 4}', "--epochs", "1",
                  "--qat-epochs", "1") == 0
    return out


def test_trained_user_model_is_an_ordinary_checkpoint(trained, tmp_path, monkeypatch):
    """The checkpoint holds the spec fx built; export needs no user code (its import is made to fail)."""
    qann, float_net, meta = checkpoint.load(trained)
    assert meta["arch"] == f"{MY_NET}:build" and meta["bits"] == 2 and meta["dataset"] == "digits"
    assert [s["kind"] for s in meta["spec"]] == ["conv", "conv", "avgpool"]
    assert [s["out"] for s in meta["spec"][:2]] == [4, 8]  # width 4 from --model-args
    for name in [m for m in sys.modules if m.startswith("fastsnn_user_model_")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(user_model, "load_function", lambda spec: pytest.fail("export imported the user's code"))
    h5, rec = tmp_path / "net.h5", tmp_path / "ref.json"
    assert export.main([str(trained), "-o", str(h5)]) == 0 and h5.is_file()
    assert run.main([str(h5), "--dataset", "digits", "--backend", "reference", "--samples", "40", "--json",
                     str(rec), "--no-progress"]) == 0
    r = json.loads(rec.read_text())
    assert r["samples"] == 40 and r["bits"] == 2 and r["timesteps"] == 3
    assert read_network(h5).equals(to_network(qann))  # the file holds exactly the trained QANN's integers


def test_trained_user_model_runs_on_lava_like_the_reference(trained, tmp_path, require_lava):
    h5, rec = tmp_path / "net.h5", tmp_path / "lava.json"
    assert export.main([str(trained), "-o", str(h5)]) == 0
    assert run.main([str(h5), "--dataset", "digits", "--backend", "lava-sim", "--samples", "6", "--json", str(rec),
                     "--no-progress"]) == 0
    r = json.loads(rec.read_text())
    assert r["samples"] == 6 and r["reference_agreement"] == 1.0 and r["first_difference"] is None


def test_progressive_precision_takes_a_user_model_checkpoint(trained, tmp_path):
    out = tmp_path / "one_bit.pt"
    assert _train(out, "--model", f"{MY_NET}:build", "--model-args", '{"width": 4}', "--bits", "1", "--init",
                  str(trained), "--qat-epochs", "0") == 0
    meta = checkpoint.load(out)[2]
    assert meta["bits"] == 1 and meta["init_bits"] == 2 and meta["spec"] == checkpoint.load(trained)[2]["spec"]
    assert meta["float_test_accuracy"] == checkpoint.load(trained)[2]["float_test_accuracy"]  # the same float ANN


def _pretrained(path: Path) -> torch.nn.Module:
    """my_net.build(width=4) with non-trivial BatchNorm statistics, its state_dict saved to ``path``."""
    torch.manual_seed(3)
    model = user_model.load_model(f"{MY_NET}:build", {"width": 4})
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.1, 0.1)
    torch.save(model.state_dict(), path)
    return model.eval()


def test_weights_start_the_float_model_and_epochs_0_keeps_them(tmp_path):
    model = _pretrained(tmp_path / "w.pt")
    out = tmp_path / "m.pt"
    assert _train(out, "--model", f"{MY_NET}:build", "--model-args", '{"width": 4}', "--weights",
                  str(tmp_path / "w.pt"), "--epochs", "0", "--qat-epochs", "0") == 0
    _, float_net, meta = checkpoint.load(out)
    x = torch.as_tensor(load_dataset("digits").x_test[:32], dtype=torch.float32) / 16
    with torch.no_grad():
        want, got = model(x), float_net(x)
    assert torch.allclose(got, want, atol=1e-4), "the float net is not the pretrained model (BN folded)"
    assert meta["float_test_accuracy"] == pytest.approx(
        float((model(torch.as_tensor(load_dataset("digits").x_test, dtype=torch.float32) / 16).argmax(1).numpy()
               == load_dataset("digits").y_test).mean()), abs=2 / 360)  # up to a rounding tie or two


def test_python_api_module_and_dotted_name(tmp_path, monkeypatch):
    from fastsnn_lava.pipeline import train as train_api
    monkeypatch.syspath_prepend(str(MODELS))
    module = user_model.load_model("my_net:build", {"width": 4})  # package.module:FUNCTION form
    assert isinstance(module, torch.nn.Module) and module.head.in_features == 8
    model = _pretrained(tmp_path / "w.pt")
    user_model.load_weights(module, tmp_path / "w.pt")
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), model.state_dict().values()))
    qann, float_net, meta = train_api("digits", model=module, bits=2, epochs=0, qat_epochs=0, progress=False,
                                      threads=1)
    assert meta["arch"] == "MyNet" and [s["out"] for s in qann.spec[:2]] == [4, 8]
    x = torch.as_tensor(load_dataset("digits").x_test[:8], dtype=torch.float32) / 16
    with torch.no_grad():
        assert torch.allclose(float_net(x), model(x), atol=1e-4)  # epochs=0: the loaded weights, BN folded


class _Stop(Exception):
    pass


def _stop_at(at: tuple):
    """An ``on_epoch`` callback that interrupts the run after (phase, epoch) ``at``."""
    def stop(*phase_epoch):
        if phase_epoch == at:
            raise _Stop
    return stop


@pytest.mark.parametrize("stop_at", [("float", 1), ("qat", 1)])
def test_interrupted_user_model_run_resumes_exactly(tmp_path, stop_at):
    """The resume file names the model (spec string and arguments); a resumed run, in either phase, ends
    bit-identical to the straight run, whose seed also fixes the model's initial weights."""
    from fastsnn_lava.pipeline import train as train_api
    kw = dict(dataset="digits", model=f"{MY_NET}:build", model_args='{"width": 4}', bits=2, epochs=2, qat_epochs=2,
              seed=5, progress=False, threads=1)
    qa, fa, _ = train_api(out=str(tmp_path / "a.pt"), **kw)
    with pytest.raises(_Stop):
        train_api(out=str(tmp_path / "b.pt"), on_epoch=_stop_at(stop_at), **kw)
    qb, fb, meta = train_api(out=str(tmp_path / "b.pt"), resume=str(tmp_path / "b.pt.resume"), progress=False)
    assert meta["arch"] == f"{MY_NET}:build" and not (tmp_path / "b.pt.resume").exists()
    for a, b in ((qa, qb), (fa, fb)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def refused(tmp_path, capsys):
    """refused(argv, *words): fastsnn-train exits 2 with one line naming ``words``, writing nothing."""
    def check(argv, *words):
        out = tmp_path / "never.pt"
        assert train.main([*QUICK, "--epochs", "0", "--qat-epochs", "0", *argv, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("fastsnn-train: error:"), err
        for w in words:
            assert w in err, err
        assert not out.exists() and not Path(str(out) + ".resume").exists()
    return check


def _file(tmp_path, text: str, name="user.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_hostile_model_files(tmp_path, refused):
    refused(["--model", f"{tmp_path}/nowhere.py:build"], "nowhere.py: no such file: give an existing Python file")
    (tmp_path / "dir.py").mkdir()
    refused(["--model", f"{tmp_path}/dir.py:build"], "is a folder")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.py")
        refused(["--model", f"{tmp_path}/pipe.py:build"], "FIFO")  # would block the reader forever
    bad = _file(tmp_path, "import torch\n\ndef build(:\n    pass\n", "bad.py")
    refused(["--model", f"{bad}:build"], "bad.py:3", "syntax error")
    boom = _file(tmp_path, "raise RuntimeError('no GPU here')\n", "boom.py")
    refused(["--model", f"{boom}:build"], "importing", "RuntimeError: no GPU here")
    refused(["--model", MY_NET], "does not name a function")
    refused(["--model", "no_such_package_xyz.models:build"], "no module named 'no_such_package_xyz'")


def test_hostile_functions(refused):
    refused(["--model", f"{MY_NET}:nope"], "has no 'nope'", "build")
    refused(["--model", f"{MY_NET}:NOT_CALLABLE"], "not a function but a value of type int")
    refused(["--model", f"{MY_NET}:broken"], "ValueError: width 8 is not supported")
    refused(["--model", f"{MY_NET}:not_a_model"], "returned a dict, not a torch.nn.Module")
    refused(["--model", f"{MY_NET}:build", "--model-args", '{"depth": 3}'], "TypeError", "depth")


def test_hostile_model_args_and_flag_combinations(refused):
    refused(["--model", f"{MY_NET}:build", "--model-args", "{width: 4}"], "--model-args is not valid JSON")
    refused(["--model", f"{MY_NET}:build", "--model-args", "[4]"], "JSON object", "not a JSON list")
    refused(["--model", f"{MY_NET}:build", "--arch", "cnn"], "--model and --arch both given")
    refused(["--arch", "cnn", "--model-args", '{"width": 4}'], "go with --model")


def test_hostile_weights(tmp_path, refused):
    args = ["--model", f"{MY_NET}:build", "--model-args", '{"width": 4}', "--weights"]
    refused([*args, str(tmp_path / "none.pt")], "no such file")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    refused([*args, str(tmp_path / "junk.pt")], "cannot be loaded with torch.load(weights_only=True)")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    refused([*args, str(tmp_path / "list.pt")], "holds a list, not a state dict")
    torch.save({"step": 3}, tmp_path / "dict.pt")
    refused([*args, str(tmp_path / "dict.pt")], "not a state dict")
    state = user_model.load_model(f"{MY_NET}:build", {"width": 4}).state_dict()
    state["head.kernel"] = state.pop("head.weight")
    torch.save(state, tmp_path / "renamed.pt")
    refused([*args, str(tmp_path / "renamed.pt")], "missing keys head.weight", "unexpected keys head.kernel")
    torch.save(user_model.load_model(f"{MY_NET}:build", {"width": 8}).state_dict(), tmp_path / "wide.pt")
    refused([*args, str(tmp_path / "wide.pt")], "features.0.weight has shape (8, 1, 3, 3)", "(4, 1, 3, 3)")


def test_api_errors_are_fastsnn_errors():
    with pytest.raises(FastSNNError, match="JSON object"):
        user_model.parse_args("3")
    assert user_model.parse_args(None) == {} and user_model.parse_args('{"width": 2}') == {"width": 2}
    with pytest.raises(FastSNNError, match="not a torch.nn.Module"):
        user_model.load_model(f"{MY_NET}:not_a_model")
    assert user_model.load_model(f"{MY_NET}:build").head.in_features == 16  # the default width 8
