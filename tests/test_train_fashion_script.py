"""scripts/train_fashion.py: a bad option or an unknown architecture is one line on stderr, exit 2, and nothing
is trained or written."""
import pytest


@pytest.mark.parametrize("args,word", [(["--threads", "0"], "--threads"), (["--bits", "4,x"], "--bits"),
                                       (["--arch", "nosuchnet"], "nosuchnet")])
def test_bad_option_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, repository_file, args, word):
    script = repository_file("scripts/train_fashion.py")
    monkeypatch.setattr("fastsnn_lava.pipeline.load_dataset", lambda *a, **k: pytest.fail("no data may be read"))
    monkeypatch.setattr("sys.argv", ["train_fashion.py", "--out", str(tmp_path / "out"), *args])
    with pytest.raises(SystemExit) as e:
        script.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and word in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
