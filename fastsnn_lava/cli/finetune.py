"""fastsnn-finetune: fine-tuning of a checkpoint's signed-IF SNN: layer-wise (Fast-SNN, arXiv:2305.19868), tandem or
bias calibration; with --target cuba, tandem fine-tuning through Lava's CUBA LIF (for fastsnn-export --neuron cuba).

The flags, defaults and choices are :class:`fastsnn_lava.options.TuneOptions` (torch-free, so parsing and
--help do not import torch); the tuners check the choices again."""
from __future__ import annotations

import dataclasses
import sys

from ..options import TuneOptions
from .common import arguments, check_outputs, options, parser, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-finetune",
               "Tune hidden layers 2..L-1 so the SNN matches the quantized ANN. Forward = the SNN's spike counts,\n"
               "backward = the QANN's gradient (straight-through), thresholds frozen, SGD; the output still\n"
               "exports losslessly. --method layerwise (the paper's): one layer at a time, MSE to the QANN's\n"
               "activation. --method tandem: all layers at once, distilled from the QANN's logits (deep nets),\n"
               "backpropagating through the T steps (--gradient bptt, default) or the QANN's graph (qann).\n"
               "--method calibrate: no gradients, only shift each channel's bias so its mean spike count matches\n"
               "the QANN (seconds); --calibrate N does that on N images before layerwise or tandem.\n"
               "--target cuba: tandem through Lava's standard CUBA LIF instead (reset to zero, spikes 0/1, the\n"
               "--cuba-threshold mapping), for a lossless fastsnn-export --neuron cuba with the same mapping.",
               "fastsnn-finetune model.pt --dataset digits -o model_ft.pt\n"
               "  fastsnn-finetune resnet.pt --method tandem --calibrate 256 --checks 8 -o resnet_ft.pt\n"
               "  fastsnn-finetune resnet.pt --method calibrate -o resnet_cal.pt\n"
               "  fastsnn-finetune model.pt --target cuba -o model_cuba.pt && "
               "fastsnn-export model_cuba.pt --neuron cuba -o net.h5")
    p.add_argument("model", help="checkpoint written by fastsnn-train")
    p.add_argument("-o", "--output", required=True, help="fine-tuned checkpoint to write")
    arguments(p, TuneOptions, skip=("accuracy_samples",))
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import finetune
        check_outputs({"-o": a.output}, {"model": a.model})
        o = options(TuneOptions, a)
        _, rec = finetune(a.model, a.output, **dataclasses.asdict(o))
        if "calibration" in rec:
            c = rec["calibration"]
            print(f"bias calibration on {c['samples']} images: mean |count - QANN level| per channel "
                  f"{sum(c['mismatch_before']) / len(c['mismatch_before']):.4f} -> "
                  f"{sum(c['mismatch_after']) / len(c['mismatch_after']):.4f} spikes ({c['seconds']} s)")
        if rec["method"] == "tandem":
            t = rec["tandem"]
            through = f"CUBA LIF, --cuba-threshold {t['cuba_threshold']}" if t["target"] == "cuba" else "signed IF"
            print(f"held-out KL(QANN || SNN) {t['heldout_kl_before']:.4f} -> {t['heldout_kl_after']:.4f}, agreement "
                  f"{t['heldout_agreement_before']:.4f} -> {t['heldout_agreement_after']:.4f} ({t['checks_kept']}/"
                  f"{t['epochs'] * t['checks_per_epoch']} checks kept, {t['codes_changed']} codes changed; "
                  f"through the {through})")
        for r in rec["layers"]:
            print(f"layer {r['layer']}: mismatch {r['mismatch_before']:.4f} -> {r['mismatch_after']:.4f} θ "
                  f"({r['epochs_kept']}/{r['epochs_run'] * r.get('checks_per_epoch', 1)} checks kept, {r['seconds']} s)")
        print(f"SNN test accuracy {rec['snn_test_accuracy_before']:.4f} -> {rec['snn_test_accuracy']:.4f} "
              f"({rec['seconds']} s) -> {a.output}")
    return run_cli("fastsnn-finetune", go, args)


if __name__ == "__main__":
    sys.exit(main())
