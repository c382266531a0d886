"""Trace a user's model with torch.fx and run the trace once: the graph :mod:`fastsnn_lava.fx` walks.

:func:`trace` returns the ``GraphModule`` of the model, every node holding its output's shape
(``node.meta["tensor_meta"]``, from torch.fx's shape pass on a zero input of the given shape) and,
for a non-tensor output (``x.size(3)``, a shape), its value (``node.meta["value"]``), plus the
stack that made it (``node.stack_trace``, for :mod:`fastsnn_lava.fx_refusals`). A model that cannot
be traced or does not run on that shape is refused naming the user's line (and the module whose
node failed).
"""
from __future__ import annotations

import contextlib
import functools
import io
import traceback

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .errors import FastSNNError
from .fx_quant import is_user_layer
from .fx_refusals import modules_in, modules_of, refusal, user_frame, user_line
from .quant import QReLU


class Tracer(torch.fx.Tracer):
    """torch.fx's tracer with QReLU and the user's own layers (:func:`~fastsnn_lava.fx_quant.is_user_layer`: a
    Conv2d/Linear subclass, a ReLU/AvgPool2d subclass with its own forward, measured as a whole) as leaves, and
    ``F.avg_pool2d``/``F.adaptive_avg_pool2d`` recorded as calls also when only their size argument is traced
    (``F.avg_pool2d(x, x.size(3))``: C functions that cannot take a traced size otherwise; the shape pass then
    knows its value). Every node keeps its stack."""

    record_stack_traces = True
    POOLS = ("avg_pool2d", "adaptive_avg_pool2d")

    def trace(self, root, concrete_args=None):
        originals = {name: getattr(F, name) for name in self.POOLS}
        try:
            for name, fn in originals.items():
                setattr(F, name, recorded(fn))
            return super().trace(root, concrete_args)
        finally:
            for name, fn in originals.items():
                setattr(F, name, fn)

    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, QReLU) or is_user_layer(m) or super().is_leaf_module(m, name)


def recorded(fn):
    """``fn`` recorded as one call node when any argument is traced (a tensor or a traced size)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        traced = []
        torch.fx.node.map_aggregate((args, kwargs), lambda a: traced.append(a) if isinstance(a, torch.fx.Proxy) else a)
        return traced[0].tracer.create_proxy("call_function", fn, args, kwargs) if traced else fn(*args, **kwargs)
    return call


class ValueProp(ShapeProp):
    """torch.fx's shape pass, also keeping each non-tensor value (``x.size(3)``, a shape) in
    ``node.meta["value"]``: pooling checks need the kernel a model computes from a shape. ``node``
    is the node it ran last (the one that failed, when one does)."""

    node = None

    def run_node(self, n):
        self.node = n
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            n.meta["value"] = result
        return result


def trace(module: nn.Module, input_shape: tuple) -> torch.fx.GraphModule:
    """The traced ``module`` with shapes and values from one run on zeros of ``(2, *input_shape)``."""
    tracer = Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # the module stack still holds the modules whose forward was running
        raise FastSNNError(refusal(user_frame(traceback.extract_tb(e.__traceback__)), modules_in(
            module, tracer.module_stack), f"the model cannot be traced by torch.fx ({type(e).__name__}: "
            f"{str(e)[:120]}): avoid data-dependent Python control flow in forward()")) from None
    gm = torch.fx.GraphModule(module, graph)
    was_training = module.training
    gm.eval()
    prop = ValueProp(gm)
    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # the shape pass prints what it raises
            prop.propagate(torch.zeros(2, *input_shape))
    except Exception as e:
        cause = e.__cause__ or e
        message = f"the model does not run on input shape {tuple(input_shape)} ({type(cause).__name__}: " \
                  f"{str(cause)[:120]})"
        node = prop.node
        raise FastSNNError(refusal(user_line(node), modules_of(node, module), message) if node else message) from None
    finally:
        module.train(was_training)
    return gm
