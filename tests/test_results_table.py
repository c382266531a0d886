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
