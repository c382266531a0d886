"""fastsnn-finetune: fine-tuning of a checkpoint's signed-IF SNN: layer-wise (Fast-SNN §8), tandem or bias calibration.

The choices of --schedule and --gradient repeat :mod:`fastsnn_lava.tandem`'s SCHEDULES and GRADIENTS
as literals so that parsing (and --help) does not import torch; ``tandem()`` checks them again."""
from __future__ import annotations

import sys

from .common import check_outputs, integer, parser, real, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-finetune",
               "Tune hidden layers 2..L-1 so the SNN matches the quantized ANN. Forward = the SNN's spike counts,\n"
               "backward = the QANN's gradient (straight-through), thresholds frozen, SGD; the output still\n"
               "exports losslessly. --method layerwise (the paper's): one layer at a time, MSE to the QANN's\n"
               "activation. --method tandem: all layers at once, distilled from the QANN's logits (deep nets),\n"
               "backpropagating through the T steps (--gradient bptt, default) or the QANN's graph (qann).\n"
               "--method calibrate: no gradients, only shift each channel's bias so its mean spike count matches\n"
               "the QANN (seconds); --calibrate N does that on N images before layerwise or tandem.",
               "fastsnn-finetune model.pt --dataset digits -o model_ft.pt\n"
               "  fastsnn-finetune resnet.pt --method tandem --calibrate 256 --checks 8 -o resnet_ft.pt\n"
               "  fastsnn-finetune resnet.pt --method calibrate -o resnet_cal.pt")
    p.add_argument("model", help="checkpoint written by fastsnn-train")
    p.add_argument("-o", "--output", required=True, help="fine-tuned checkpoint to write")
    p.add_argument("--dataset", default=None, help="training data (default: the checkpoint's dataset)")
    p.add_argument("--method", default="layerwise", choices=("layerwise", "tandem", "calibrate"),
                   help="layerwise (default, the paper's), tandem (whole network at once, distilled from the QANN) "
                        "or calibrate (bias calibration only)")
    p.add_argument("--calibrate", type=integer(0), default=None, metavar="N",
                   help="first shift each hidden channel's bias code so that its mean spike count on N seeded "
                        "training images matches the QANN's (default: off; 256 for --method calibrate)")
    p.add_argument("--epochs", type=integer(1), default=1, help="epochs per layer, or whole-network epochs for tandem (default 1)")
    p.add_argument("--accept", default="mismatch", choices=("mismatch", "accuracy"),
                   help="keep an epoch's update only if the layer's held-out mismatch to the QANN falls "
                        "(default) or the SNN's training accuracy rises (the paper's rule)")
    p.add_argument("--force", action="store_true", help="keep every update")
    p.add_argument("--checks", type=integer(1), default=1,
                   help="acceptance checks per epoch, evenly spaced (default 1: at its end); more keep the best "
                        "point within an epoch, one held-out evaluation each")
    p.add_argument("--lr", type=real(0, low_open=True), default=None, help="SGD learning rate (momentum 0.9). layerwise: default the paper's "
                   "1e-3, which on the 8-bit integer grid moves few codes (the README's Fashion-MNIST table uses 0.1); "
                   "tandem: the step in integer codes of a typical code per batch, default 0.005")
    p.add_argument("--schedule", default="halve", choices=("halve", "cosine"),
                   help="tandem: halve the step on every rejected check (default), or anneal it as a cosine "
                        "over the run (a rejected check then only restores the kept codes)")
    p.add_argument("--gradient", default="bptt", choices=("bptt", "qann"),
                   help="tandem: backpropagate through the T steps with a surrogate spike derivative (default), "
                        "or through the QANN's graph at the SNN's spike counts (cheaper, blind to spike order)")
    p.add_argument("--labels", type=real(0), default=0.0, metavar="W",
                   help="tandem: add W × the label cross-entropy to the distillation loss and the held-out "
                        "criterion (default 0: pure distillation from the QANN)")
    p.add_argument("--classifier", action="store_true",
                   help="tandem: tune the classifier's weight and bias codes too (default: they stay as converted)")
    p.add_argument("--average", type=real(0, 1, high_open=True), default=0.0, metavar="D",
                   help="tandem: judge the codes of a moving average of the code masters (decay D per step, "
                        "e.g. 0.99) instead of the masters themselves (default 0: off)")
    p.add_argument("--batch-size", type=integer(1), default=128)
    p.add_argument("--max-samples", type=integer(1), default=None, help="train on at most N training samples per epoch")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import finetune
        check_outputs({"-o": a.output}, {"model": a.model})
        _, rec = finetune(a.model, a.output, a.dataset, a.epochs, a.accept, a.force, a.lr, a.batch_size,
                          a.max_samples, a.seed, progress=not a.no_progress, checks=a.checks, method=a.method,
                          schedule=a.schedule, label_weight=a.labels, calibrate=a.calibrate,
                          gradient=a.gradient, classifier=a.classifier,
                          average=a.average)
        if "calibration" in rec:
            c = rec["calibration"]
            print(f"bias calibration on {c['samples']} images: mean |count - QANN level| per channel "
                  f"{sum(c['mismatch_before']) / len(c['mismatch_before']):.4f} -> "
                  f"{sum(c['mismatch_after']) / len(c['mismatch_after']):.4f} spikes ({c['seconds']} s)")
        if a.method == "tandem":
            t = rec["tandem"]
            print(f"held-out KL(QANN || SNN) {t['heldout_kl_before']:.4f} -> {t['heldout_kl_after']:.4f}, agreement "
                  f"{t['heldout_agreement_before']:.4f} -> {t['heldout_agreement_after']:.4f} ({t['checks_kept']}/"
                  f"{t['epochs'] * t['checks_per_epoch']} checks kept, {t['codes_changed']} codes changed)")
        for r in rec["layers"]:
            print(f"layer {r['layer']}: mismatch {r['mismatch_before']:.4f} -> {r['mismatch_after']:.4f} θ "
                  f"({r['epochs_kept']}/{r['epochs_run'] * r.get('checks_per_epoch', 1)} checks kept, {r['seconds']} s)")
        print(f"SNN test accuracy {rec['snn_test_accuracy_before']:.4f} -> {rec['snn_test_accuracy']:.4f} "
              f"({rec['seconds']} s) -> {a.output}")
    return run_cli("fastsnn-finetune", go, args)


if __name__ == "__main__":
    sys.exit(main())
