"""Where a refusal of a user's model points: the user's module, its class and the user's line.

:mod:`fastsnn_lava.fx` refuses what it cannot convert node by node (:func:`fastsnn_lava.fx_patterns.fail`).
A node of the torch.fx trace says which module made it and where: torch.fx keeps, per node, the stack
of modules whose ``forward`` was running (``node.meta["nn_module_stack"]``: qualified name and class,
innermost last) and, with ``Tracer.record_stack_traces = True``, the Python stack that made the node
(``node.stack_trace``, innermost frame last). The user's line is the innermost frame *inside the traced
forward* that belongs neither to torch nor to this package; a class is located with :mod:`inspect`.

:func:`refusal` (:func:`located` for a node) turns a refusal into the one line the user reads::

    <file>:<line>: [in '<module>' (<Class>): ]<what> is not supported: <fix>

A user's subclass of a layer this project converts (a ``Conv2d``/``Linear`` whose ``forward`` computes
its own weight, a ``ReLU`` with its own ``forward``) is a leaf of the trace and measured as a whole
(:mod:`fastsnn_lava.fx_quant`), so no refused node lies inside one. :func:`refuse_parameter`,
:func:`refuse_module` and :func:`refuse_call` give the one cause of a parameter read, an unknown layer
and an unknown function or tensor method.
"""
from __future__ import annotations

import inspect
import os
import re

import torch
import torch.fx
import torch.nn as nn

from .fx_patterns import ALLOWED, fail

_FRAME = re.compile(r'File "(.+)", line (\d+), in ')
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FX_DIR = os.path.join(_TORCH_DIR, "fx") + os.sep
_OUR_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
MAX_POOL_FIX = ("use a stride-2 Conv2d or an AvgPool2d (a max of spike counts is not a linear map of them: no "
                "integer synapse computes it)")
ACTIVATION_FIX = "use nn.ReLU, F.relu or QReLU (only ReLU activations become spiking neurons)"
_CONCAT = ("cat", "concat", "concatenate", "stack", "hstack", "vstack")
_MAX_POOLS = ("max_pool1d", "max_pool2d", "adaptive_max_pool2d", "max_pool2d_with_indices")
_ACTIVATION_NAMES = ("sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "relu6", "hardtanh",
                     "softplus", "hardswish", "hardsigmoid", "mish", "prelu", "softsign", "logsigmoid")


def short_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else as it is."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel


def user_frame(frames) -> str | None:
    """``file:line`` of the innermost of ``frames`` (``(path, line, ...)``, outermost first) that runs
    the user's code inside a torch.fx trace: after the first frame of torch.fx, neither torch's nor
    this package's (None if there is none)."""
    frames = [(f[0], f[1]) for f in frames]
    start = next((i for i, (path, _) in enumerate(frames) if path.startswith(_FX_DIR)), len(frames))
    user = [(p, n) for p, n in frames[start:] if not p.startswith(_TORCH_DIR) and not p.startswith(_OUR_DIR)]
    return f"{short_path(user[-1][0])}:{user[-1][1]}" if user else None


def user_line(node: torch.fx.Node) -> str | None:
    """``file:line`` of the innermost frame of the user's code that made ``node`` (None if none)."""
    return user_frame(_FRAME.findall(node.stack_trace or ""))


def class_site(cls: type) -> str | None:
    """``file:line`` of the definition of a user's class (None for torch's own and unknown sources)."""
    if cls.__module__.startswith("torch."):
        return None
    try:
        return f"{short_path(inspect.getsourcefile(cls))}:{inspect.getsourcelines(cls)[1]}"
    except (TypeError, OSError):
        return None


def modules_in(root: nn.Module, stack) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of ``root`` (name ``""``) and of the modules of a torch.fx module stack
    (``{key: (qualified name, class)}``, innermost last)."""
    return [("", root)] + [(q, root.get_submodule(q)) for q, _ in (stack or {}).values()]


def modules_of(node: torch.fx.Node, root: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of the modules whose forward made ``node``, the root first, innermost
    last; for a parameter read (``get_attr``), its owner (the qualified name's prefix) comes last."""
    out = modules_in(root, node.meta.get("nn_module_stack"))
    if node.op == "get_attr":
        owner = str(node.target).rpartition(".")[0]
        if out[-1][0] != owner:
            out.append((owner, root.get_submodule(owner)))
    return out


def describe(name: str, m: nn.Module, site: bool = False) -> str:
    """``'name' (Class)`` (``the model (Class)`` for the root), with where the class is defined when
    ``site``."""
    where = class_site(type(m)) if site else None
    label = f"'{name}'" if name else "the model"
    return f"{label} ({type(m).__name__}{', defined at ' + where if where else ''})"


def own_forward(m: nn.Module) -> bool:
    """Whether ``m``'s class (or a user's base class) defines ``forward`` instead of torch's layer."""
    return not getattr(type(m).forward, "__module__", "torch.").startswith("torch.")


def refuse_parameter(node: torch.fx.Node, root: nn.Module):
    """Refuse a ``get_attr`` node: a parameter or buffer read in forward, named with its owning module
    (the qualified name's prefix) and class."""
    owner, _, attr = str(node.target).rpartition(".")
    what = "a tensor constant" if not owner and attr.startswith("_tensor_constant") else f"the parameter '{attr}'"
    fail(f"reading {what} of {describe(owner, root.get_submodule(owner), site=True)} in forward",
         f"only the weights of Conv2d, Linear and BatchNorm layers convert; build the model from {ALLOWED}")


def refuse_module(m: nn.Module, name: str):
    """Refuse the layer ``m`` (qualified name ``name``) that the converter does not know."""
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        fail(f"{type(m).__name__} '{name}'", MAX_POOL_FIX)
    fail(f"{type(m).__name__} '{name}'", ACTIVATION_FIX if type(m).__module__ == nn.ReLU.__module__
         else f"build the model from {ALLOWED}")


def refuse_call(kind: str, fname: str):
    """Refuse a call of the ``kind`` ("function" or "tensor method") ``fname`` with its one cause."""
    if fname in _CONCAT:
        fail(f"concatenation ({'torch' if kind == 'function' else 'Tensor'}.{fname})",
             "join branches with residual additions (+) instead of concatenating them", yet=True)
    if fname in _MAX_POOLS:
        fail(f"the {kind} '{fname}'", MAX_POOL_FIX)
    fail(f"the {kind} '{fname}'", ACTIVATION_FIX if fname.rstrip("_") in _ACTIVATION_NAMES
         else f"build the model from {ALLOWED}")


def refusal(line: str | None, mods: list, message: str, name_module: bool = True) -> str:
    """One line: ``message`` after the user's ``line`` (``file:line``) and, when ``name_module``, the
    innermost of ``mods`` (the modules whose forward was running)."""
    parts = [line, f"in {describe(*mods[-1])}" if name_module else None]
    return ": ".join([p for p in parts if p] + [message])


def located(node: torch.fx.Node, root: nn.Module, message: str) -> str:
    """The one-line :func:`refusal` of ``node``; a layer (``call_module``) and a parameter read name
    their module in ``message`` already."""
    mods = [(q, m) for q, m in modules_of(node, root) if not (node.op == "call_module" and q == node.target)]
    return refusal(user_line(node), mods, message, node.op in ("call_function", "call_method"))
