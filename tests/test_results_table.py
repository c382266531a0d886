"""scripts/results_table.py reuses what an interrupted run left (a cached row, fine-tuned checkpoints) only
when it was made from the checkpoint as it is now: a model retrained in place must not get the old table."""
import json
from pathlib import Path

from fastsnn_lava import checkpoint
from fastsnn_lava.pipeline import finetune, train



def _retrain_in_place(path: Path) -> None:
    """What a second training run writing the same file looks like to the table: another training record."""
    qann, float_net, meta = checkpoint.load(str(path))
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    checkpoint.save(str(path), qann, float_net, dict(meta, train_seconds=meta.get("train_seconds", 0.0) + 1.0))


def test_results_table_reuses_derived_files_only_from_the_checkpoint_as_it_is_now(tmp_path, repository_file):
    rt = repository_file("scripts/results_table.py")
    src = tmp_path / "cifar10_cnn_b2.pt"
    cal, tuned = tmp_path / "cifar10_cnn_b2_ft_calibrate.pt", tmp_path / "cifar10_cnn_b2_ft_mismatch.pt"
    train("digits", "cnn", 2, str(src), epochs=0, qat_epochs=0, progress=False, threads=1)
    finetune(str(src), str(cal), method="calibrate", calibrate=16, progress=False)
    settings = dict(epochs=1, max_samples=64, lr=0.1)
    finetune(str(src), str(tuned), progress=False, **settings)
    cache = tmp_path / "cifar10_row_cnn_b2.json"
    cache.write_text(json.dumps(rt.stamped({"bits": 2, "qann": 0.5}, src)))
    made = cal.stat().st_mtime_ns

    out = {}
    rt._calibrated(out, src, cal, 16)  # made from src as it is: reused, not redone
    assert cal.stat().st_mtime_ns == made and out["finetune_calibrate"] == checkpoint.load(str(cal))[2]["finetune"]
    assert rt.cached_row(cache, src) == {"bits": 2, "qann": 0.5, "source": rt.stamped({}, src)["source"]}
    assert rt._ft_record(tuned, "layerwise", "digits", source=src, **settings) is not None

    _retrain_in_place(src)
    assert rt.cached_row(cache, src) is None  # the earlier model's row is not this model's
    assert rt._ft_record(tuned, "layerwise", "digits", source=src, **settings) is None
    rt._calibrated({}, src, cal, 16)  # calibrated again, from the retrained model
    assert cal.stat().st_mtime_ns != made and rt.made_from(cal, src)


def test_training_chain_names_every_precision_step(tmp_path, repository_file):
    """A run from scratch trains the float ANN and then its QANN: both steps, not just "float"; a float-only
    run is "float", and a stage started from another checkpoint adds its bit width to that one's chain."""
    rt = repository_file("scripts/results_table.py")
    scratch, float_only, staged = tmp_path / "a.pt", tmp_path / "f.pt", tmp_path / "b.pt"
    for path, qat, init, bits in ((scratch, 1, None, 3), (float_only, 0, None, 2), (staged, 1, scratch, 2)):
        train("digits", "cnn", bits, str(path), epochs=0, qat_epochs=qat, progress=False, threads=1,
              train_samples=32, init=str(init) if init else None)
    assert rt._training(scratch)["training"]["chain"] == "float → 3-bit"
    assert rt._training(float_only)["training"]["chain"] == "float"
    assert rt._training(staged)["training"]["chain"] == "float → 3-bit → 2-bit"
