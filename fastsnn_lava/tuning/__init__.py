"""Tuning the integer SNN after conversion, on the frozen grid (the result still exports losslessly):

* :mod:`.layerwise`: Fast-SNN's layer-wise fine-tuning (:func:`finetune`);
* :mod:`.calibration`: gradient-free per-channel bias calibration (:func:`calibrate`);
* :mod:`.distillation`: all hidden layers at once, distilled from the QANN (:func:`tandem`);
* :mod:`.cuba_tuning`: the same through Lava's CUBA LIF, for ``--neuron cuba`` (:func:`cuba_tandem`);
* :mod:`.common`: what they share (held-out split, codes on the frozen grid, exact dtypes).

All of them simulate through the layer loop of :mod:`fastsnn_lava.kernel`.
"""
from .calibration import CalibrationReport, calibrate
from .common import HELDOUT, heldout_count
from .layerwise import RULES, LayerReport, finetune
from .distillation import DIVERGED, GO_ON, GRADIENTS, KEEP, LR, RESTORE, SCHEDULES, TandemReport, decide, tandem
from .cuba_tuning import CubaTuner, cuba_tandem

__all__ = ["finetune", "calibrate", "tandem", "cuba_tandem", "CubaTuner", "LayerReport", "CalibrationReport",
           "TandemReport", "decide", "KEEP", "GO_ON", "RESTORE", "DIVERGED", "LR", "SCHEDULES", "GRADIENTS", "RULES",
           "HELDOUT", "heldout_count"]
