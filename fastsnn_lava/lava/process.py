"""Lava processes of Fast-SNN and their CPU process models.

* :class:`SignedIF`: the IF neuron of :func:`fastsnn_lava.neuron.if_step`
  (signed or unsigned), with a per-sample window of ``reset_interval`` steps:
  at window phase 0 it restores ``v = θ/2, n = 0``; during phases ``0..T−1`` it
  integrates ``a_in + bias`` and fires ±1; in the remaining phases it idles.
* :class:`Accumulator`: the output layer. It sums ``a_in + bias`` over the
  window's T steps and sends its running sum every step (a graded value), so a
  sink reads ``Σ_t I^L(t)`` at the window's last active step.
* :class:`SampleSource`: streams N integer samples, each held for T steps
  followed by idle (zero) steps, one window per sample.
* :class:`SpikeDelay`: passes spikes on ``delay`` steps later (``out(t) = in(t − d)``).
  The loader puts one in front of a residual shortcut's synapse: the main path
  from layer j to layer l crosses ``l − j`` synapses of one step each, the
  shortcut one synapse, so it must wait ``d = l − j − 1`` steps. On Loihi 2 the
  same delay is a synaptic delay (DelayDense) or a chain of ``d`` relay neurons.

The window phase of a process is ``(t − reset_offset) mod reset_interval``;
netx hands every block an offset one larger than the block before, which
matches the one-step delay of each Dense/Conv synapse. Each process has a
``fixed_pt`` model (int32 arithmetic, what netx runs) and a ``floating_pt``
model (float64, for standalone use), both made by :func:`_model_pair` from one
class body and the port/variable widths; the models call the same step function
as the reference simulation.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from ..neuron import if_step


class _Windowed(AbstractProcess):
    def __init__(self, *, shape, timesteps: int, reset_interval: int, reset_offset: int = 1, bias=0, **kwargs):
        super().__init__(shape=shape, timesteps=timesteps, reset_interval=reset_interval,
                         reset_offset=reset_offset, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias), shape).copy())
        self.v = Var(shape=shape, init=0)


class SignedIF(_Windowed):
    """Signed (or unsigned) IF neurons with threshold ``theta`` (even integer), v(0) = θ/2."""

    def __init__(self, *, shape, theta: int, signed: bool = True, timesteps: int, reset_interval: int,
                 reset_offset: int = 1, bias=0, **kwargs):
        super().__init__(shape=shape, timesteps=timesteps, reset_interval=reset_interval,
                         reset_offset=reset_offset, bias=bias, theta=theta, signed=signed, **kwargs)
        self.n = Var(shape=shape, init=0)


class Accumulator(_Windowed):
    """Non-spiking output neurons: running sum of ``a_in + bias`` over each window's T steps."""


class SampleSource(AbstractProcess):
    """Sends ``data[k]`` at phases ``0..T−1`` of window ``k`` (steps ``k·R+1 … k·R+T``), zeros otherwise."""

    def __init__(self, *, data: np.ndarray, timesteps: int, reset_interval: int, **kwargs):
        super().__init__(data=data, timesteps=timesteps, reset_interval=reset_interval, **kwargs)
        self.s_out = OutPort(shape=data.shape[1:])


class SpikeDelay(AbstractProcess):
    """A first-in first-out line of ``delay`` steps: sends at step t what arrived at step t − delay."""

    def __init__(self, *, shape, delay: int, **kwargs):
        if delay < 1:
            raise ValueError("SpikeDelay needs delay >= 1")
        super().__init__(shape=shape, delay=delay, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.buffer = Var(shape=(delay,) + tuple(shape), init=0)


def _model_pair(proc, body: type, **widths) -> tuple[type, type]:
    """The ``fixed_pt`` and ``floating_pt`` CPU models of ``proc``: ``body`` with each port/variable
    ``name=(kind, bits)`` typed int32 of that precision, or float64. ``out_dtype`` is the dtype sent."""
    pair = []
    for tag_name, suffix in (("fixed_pt", "Fixed"), ("floating_pt", "Float")):
        fixed = tag_name == "fixed_pt"
        types = {name: LavaPyType(kind, np.int32, precision=bits) if fixed else LavaPyType(kind, float)
                 for name, (kind, bits) in widths.items()}
        cls = type(f"Py{proc.__name__}Model{suffix}", (body,),
                   {**types, "out_dtype": np.int32 if fixed else float, "__module__": __name__,
                    "__annotations__": {name: t.cls for name, t in types.items()}})
        pair.append(implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag(tag_name)(cls))))
    return pair[0], pair[1]


class _DelayModel(PyLoihiProcessModel):
    def run_spk(self):
        a_in = self.a_in.recv()
        out = self.buffer[0].copy()
        self.buffer[:-1] = self.buffer[1:]
        self.buffer[-1] = a_in
        self.s_out.send(out)


PySpikeDelayModelFixed, PySpikeDelayModelFloat = _model_pair(
    SpikeDelay, _DelayModel, a_in=(PyInPort.VEC_DENSE, 2), s_out=(PyOutPort.VEC_DENSE, 2), buffer=(np.ndarray, 2))


class _WindowModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.T = int(proc_params["timesteps"])
        self.R = int(proc_params["reset_interval"])
        self.offset = int(proc_params["reset_offset"])

    def window_phase(self) -> int | None:
        """Window phase of this step, or None before the first window."""
        if self.time_step < self.offset:
            return None
        return (self.time_step - self.offset) % self.R


class _SignedIFModel(_WindowModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.theta = int(proc_params["theta"])
        self.signed = bool(proc_params["signed"])

    def run_spk(self):
        a_in = self.a_in.recv()
        p = self.window_phase()
        if p is None or p >= self.T:
            self.s_out.send(np.zeros_like(self.v))
            return
        if p == 0:
            self.v[:] = self.theta // 2
            self.n[:] = 0
        v, n, s = if_step(self.v, self.n, a_in + self.bias, self.theta, self.signed)
        self.v[:] = v
        self.n[:] = n
        self.s_out.send(s.astype(self.v.dtype))


PySignedIFModelFixed, PySignedIFModelFloat = _model_pair(
    SignedIF, _SignedIFModel, a_in=(PyInPort.VEC_DENSE, 24), s_out=(PyOutPort.VEC_DENSE, 2), bias=(np.ndarray, 24),
    v=(np.ndarray, 24), n=(np.ndarray, 8))


class _AccumulatorModel(_WindowModel):
    def run_spk(self):
        a_in = self.a_in.recv()
        p = self.window_phase()
        if p is not None and p < self.T:
            if p == 0:
                self.v[:] = 0
            self.v[:] = self.v + a_in + self.bias
        self.s_out.send(self.v.copy())


PyAccumulatorModelFixed, PyAccumulatorModelFloat = _model_pair(
    Accumulator, _AccumulatorModel, a_in=(PyInPort.VEC_DENSE, 24), s_out=(PyOutPort.VEC_DENSE, 32),
    bias=(np.ndarray, 24), v=(np.ndarray, 32))


class _SourceModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.data = np.asarray(proc_params["data"])
        self.T = int(proc_params["timesteps"])
        self.R = int(proc_params["reset_interval"])

    def run_spk(self):
        k, p = divmod(self.time_step - 1, self.R)
        if k < len(self.data) and p < self.T:
            self.s_out.send(self.data[k].astype(self.out_dtype))
        else:
            self.s_out.send(np.zeros(self.data.shape[1:], dtype=self.out_dtype))


PySampleSourceFixed, PySampleSourceFloat = _model_pair(SampleSource, _SourceModel,
                                                       s_out=(PyOutPort.VEC_DENSE, 24))


def model_map(tag_name: str = "fixed_pt") -> dict:
    """Process → model map for ``exception_proc_model_map``.

    Lava's model discovery imports sibling files as top-level modules, which
    breaks this package's relative imports, so the run configuration names the
    models explicitly.
    """
    if tag_name == "fixed_pt":
        return {SignedIF: PySignedIFModelFixed, Accumulator: PyAccumulatorModelFixed,
                SampleSource: PySampleSourceFixed, SpikeDelay: PySpikeDelayModelFixed}
    if tag_name == "floating_pt":
        return {SignedIF: PySignedIFModelFloat, Accumulator: PyAccumulatorModelFloat,
                SampleSource: PySampleSourceFloat, SpikeDelay: PySpikeDelayModelFloat}
    raise ValueError(f"unknown tag {tag_name!r}")
