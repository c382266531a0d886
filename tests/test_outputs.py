"""The user's files are safe: an output is never an input, a folder, or in a missing folder; outputs
honour the umask; the command modules can be imported and called in any order (issue 22: 4, 6, 7)."""
import hashlib
import importlib
import os
import stat

import pytest

from fastsnn_lava.atomic import write_text


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(capsys, code, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], err[0]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from fastsnn_lava.pipeline import export
    d = tmp_path_factory.mktemp("outputs")
    model = trained("mlp", 2)[3]
    export(str(model), str(d / "net.h5"))
    return model, d / "net.h5"


def test_an_output_that_is_an_input_is_refused_and_the_input_survives(exported, tmp_path, capsys):
    from fastsnn_lava.cli import diagnose, export, report, run, train
    model, h5 = exported
    kept = {p: _digest(p) for p in (model, h5)}
    _refused(capsys, export.main([str(model), "-o", str(model)]), "-o", "input model")
    _refused(capsys, run.main([str(h5), "--dataset", "digits", "--json", str(h5), "--no-progress"]), "--json")
    _refused(capsys, run.main([str(h5), "--dataset", "digits", "--model", str(model), "--json", str(model)]),
             "input --model")
    _refused(capsys, report.main([str(h5), "--dataset", "digits", "--plot", str(h5)]), "input network")
    _refused(capsys, diagnose.main([str(model), "--dataset", "digits", "--json", str(model)]), "input model")
    _refused(capsys, train.main(["--init", str(model), "-o", str(model), "--epochs", "0"]), "input --init")
    link = tmp_path / "link.h5"
    link.symlink_to(h5)  # the same file under another name
    _refused(capsys, run.main([str(link), "--dataset", "digits", "--json", str(h5)]), "input network")
    _refused(capsys, report.main([str(h5), "--dataset", "digits", "--json", str(tmp_path / "r"),
                                  "--plot", str(tmp_path / "r")]), "same file")
    assert kept == {p: _digest(p) for p in (model, h5)}


@pytest.mark.parametrize("case", ["folder", "missing_folder", "parent_is_a_file"])
def test_an_output_path_that_cannot_be_a_file_is_one_line(exported, tmp_path, capsys, case):
    from fastsnn_lava.cli import export
    model, _ = exported
    (tmp_path / "afile").write_text("x")
    out, word = {"folder": (tmp_path, "is a folder"), "missing_folder": (tmp_path / "no" / "net.h5", "does not exist"),
                 "parent_is_a_file": (tmp_path / "afile" / "net.h5", "not a folder")}[case]
    _refused(capsys, export.main([str(model), "-o", str(out)]), word)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_permissions_of_a_plain_open(exported, tmp_path, umask):
    from fastsnn_lava.pipeline import export
    model, _ = exported
    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.json", "{}\n")
        export(str(model), str(tmp_path / "n.h5"))
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.json", "n.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_command_modules_import_in_any_order_and_their_main_is_callable(capsys):
    """``cli.run`` is a module; nothing in the package it shadows (once the helper ``run()``)."""
    import fastsnn_lava.cli.run  # noqa: F401
    from fastsnn_lava.cli import export
    assert callable(export.main)
    for name in ("demo", "diagnose", "export", "finetune", "report", "run", "train"):
        module = importlib.import_module(f"fastsnn_lava.cli.{name}")
        with pytest.raises(SystemExit) as e:
            module.main(["--help"])
        assert e.value.code == 0 and f"fastsnn-{name}" in capsys.readouterr().out
    assert export.main(["/nonexistent/model.pt", "-o", "/tmp/x.h5"]) == 2  # an error, not a TypeError
