"""Wrong numbers on the command line are refused while parsing: one line naming the flag, exit 2, no file."""
import pytest

from fastsnn_lava.cli import diagnose, finetune, report, run, train

CASES = [
    (train, ["--lr", "nan"], "--lr"), (train, ["--qat-lr", "inf"], "--qat-lr"), (train, ["--lr", "0"], "--lr"),
    (train, ["--batch-size", "0"], "--batch-size"), (train, ["--epochs", "-1"], "--epochs"),
    (train, ["--bits", "x"], "--bits"), (train, ["--threads", "0"], "--threads"), (train, ["--seed", "-3"], "--seed"),
    (finetune, ["m.pt", "--max-samples", "0"], "--max-samples"), (finetune, ["m.pt", "--lr", "-1"], "--lr"),
    (finetune, ["m.pt", "--average", "1"], "--average"), (finetune, ["m.pt", "--labels", "nan"], "--labels"),
    (finetune, ["m.pt", "--checks", "0"], "--checks"), (finetune, ["m.pt", "--epochs", "0"], "--epochs"),
    (diagnose, ["m.pt", "--sweep-samples", "0"], "--sweep-samples"), (diagnose, ["m.pt", "--samples", "0"], "--samples"),
    (run, ["n.h5", "--samples", "-5"], "--samples"), (report, ["n.h5", "--steps", "0"], "--steps"),
]


@pytest.mark.parametrize("module,args,flag", CASES, ids=[f"{m.__name__.split('.')[-1]}{a[-2:]}" for m, a, _ in CASES])
def test_bad_number_is_one_line_exit_2(module, args, flag, tmp_path, capsys):
    out = tmp_path / "out.pt"
    with pytest.raises(SystemExit) as e:
        module.main(args + (["-o", str(out)] if module in (train, finetune) else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"argument {flag}" in err[0], err
    assert not out.exists()


def test_report_takes_every_documented_dataset_name(tmp_path, capsys):
    """``--dataset idx:DIR`` is documented; it reaches the loader (here: a missing folder, one line)."""
    net = tmp_path / "n.h5"
    net.write_bytes(b"not hdf5")
    code = report.main([str(net), "--dataset", f"idx:{tmp_path / 'nope'}"])
    err = capsys.readouterr().err
    assert code == 2 and "invalid choice" not in err
