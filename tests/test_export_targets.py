"""fastsnn-export --hw: a target checks the network before anything is written; --hw none exports for
simulation only (the project's own resnet18/vgg11 at 3×32×32 exceed Loihi 2's fan-in, yet must be
simulable)."""
from pathlib import Path

import yaml

from fastsnn_lava.cli import export, run
from fastsnn_lava.options import hardware_target

ROOT = Path(__file__).resolve().parents[1]


def _narrow_target(tmp_path) -> Path:
    """loihi2.yaml with 4-bit weights: the digits MLP's 8-bit codes break it."""
    cfg = yaml.safe_load((ROOT / "hardware_configs" / "loihi2.yaml").read_text())
    cfg["limits"]["weight_bits"]["value"] = 4
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_hardware_target_none_means_no_check():
    assert hardware_target("none") is None and hardware_target(None) is None and hardware_target("") is None
    assert hardware_target("loihi2") == "loihi2" and hardware_target("my.yaml") == "my.yaml"


def test_export_hw_none_writes_what_a_target_refuses_and_it_runs(trained, tmp_path, capsys):
    model = trained("mlp", 2)[3]
    refused = tmp_path / "refused.h5"
    assert export.main([str(model), "-o", str(refused), "--hw", str(_narrow_target(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert "4-bit weights" in err and len(err.splitlines()) == 1
    assert not refused.exists()  # nothing half-written
    free = tmp_path / "free.h5"
    assert export.main([str(model), "-o", str(free), "--hw", "none"]) == 0
    assert free.is_file()
    capsys.readouterr()
    assert run.main([str(free), "--dataset", "digits", "--backend", "reference", "--samples", "20",
                     "--hw", "none"]) == 0
    assert '"samples": 20' in capsys.readouterr().out
