"""A model the user wrote: ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` → an ``nn.Module``.

``fastsnn-train --model my_net.py:build --model-args '{"width": 4}'`` calls ``build(width=4)``;
FUNCTION returns a float ``nn.Module`` that takes inputs scaled to [0, 1] (x / input_max) and
returns the logits. :func:`fastsnn_lava.fx.convert` turns it into this project's spec, so the
trained checkpoint is an ordinary one: export and run need no user code.

A file is imported under a fresh module name (``importlib.util.spec_from_file_location``), a dotted
name with ``importlib.import_module``. Importing runs the file's code: name only code you trust.
Every careless input (a missing file, a syntax error, a missing or failing FUNCTION, arguments
that are not a JSON object, weights that do not fit) is a one-line
:class:`~fastsnn_lava.errors.FastSNNError` that names the problem and says what to do.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import sys

from .errors import FastSNNError
from .inputs import regular_file

_NAMES = itertools.count()  # a fresh module name for every file imported
USAGE = "give --model FILE.py:FUNCTION or package.module:FUNCTION"
SHOWN = 3  # the most missing/unexpected keys an error names


def one_line(e: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def parse_args(text) -> dict:
    """``--model-args``: a JSON object (text), a dict, or None/empty (no arguments) → a dict."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        raise FastSNNError(f"--model-args is not valid JSON ({one_line(e)}): give an object of keyword "
                           "arguments, e.g. '{\"width\": 4}'") from None
    if not isinstance(value, dict):
        raise FastSNNError(f"--model-args must be a JSON object of keyword arguments, e.g. '{{\"width\": 4}}', "
                           f"not a JSON {type(value).__name__}")
    return value


def split(spec: str) -> tuple[str, str]:
    """``(file or module, function)`` of ``FILE.py:FUNCTION`` / ``package.module:FUNCTION``."""
    where, sep, name = str(spec).rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise FastSNNError(f"--model {spec!r} does not name a function: {USAGE}")
    return where, name


def given_file(path, flag: str, what: str, todo: str):
    """:func:`~fastsnn_lava.inputs.regular_file` of ``path``, its one-line error naming ``flag`` and what to do."""
    try:
        return regular_file(path, what)
    except FastSNNError as e:
        raise FastSNNError(f"{flag} {e}: {todo}") from None


def is_file(where: str) -> bool:
    """True when ``where`` names a file (``.py`` or a path), False for a dotted module name."""
    return where.endswith(".py") or "/" in where or "\\" in where


def import_file(path: str):
    """Import the Python file ``path`` under a fresh module name (its code runs)."""
    p = given_file(path, "--model", "Python file", "give an existing Python file: --model FILE.py:FUNCTION")
    name = f"fastsnn_user_model_{next(_NAMES)}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise FastSNNError(f"{path} cannot be imported as Python: {USAGE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and torch.fx look their classes up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise FastSNNError(f"{e.filename or path}:{e.lineno}: syntax error ({e.msg}): fix the file") from None
    except Exception as e:
        del sys.modules[name]
        raise FastSNNError(f"importing {path} raised {one_line(e)}: fix the file") from None
    return module


def import_name(dotted: str):
    """Import the module ``package.module`` (it must be importable from here: installed or on sys.path)."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as e:
        raise FastSNNError(f"no module named {e.name or dotted!r}: {USAGE} (a module must be importable, "
                           "e.g. installed or in the current folder)") from None
    except SyntaxError as e:
        raise FastSNNError(f"{e.filename}:{e.lineno}: syntax error ({e.msg}): fix the file") from None
    except Exception as e:
        raise FastSNNError(f"importing {dotted} raised {one_line(e)}: fix the module") from None


def load_function(spec: str):
    """The callable FUNCTION that ``spec`` names."""
    where, name = split(spec)
    module = import_file(where) if is_file(where) else import_name(where)
    if not hasattr(module, name):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                      and getattr(v, "__module__", None) == module.__name__)
        raise FastSNNError(f"{where} has no {name!r}: name a function it defines "
                           f"({', '.join(have) if have else 'it defines none'})")
    fn = getattr(module, name)
    if not callable(fn):
        raise FastSNNError(f"{where}:{name} is not a function but a value of type {type(fn).__name__}: name "
                           "a function that returns the model")
    return fn


def load_model(spec: str, args: dict | str | None = None):
    """``FUNCTION(**args)`` of ``spec`` (``FILE.py:FUNCTION`` or ``package.module:FUNCTION``), checked to
    be an ``nn.Module``; ``args``: a dict or JSON object text (``--model-args``)."""
    import torch.nn as nn
    kwargs = parse_args(args)
    fn = load_function(spec)
    try:
        model = fn(**kwargs)
    except Exception as e:
        raise FastSNNError(f"{spec}(**{json.dumps(kwargs)}) raised {one_line(e)}: fix the function or "
                           "--model-args") from None
    if not isinstance(model, nn.Module):
        raise FastSNNError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module: return the model")
    return model


def _names(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def load_weights(module, path) -> None:
    """Load the float weights of ``path`` (a ``state_dict`` saved with ``torch.save``, read with
    ``weights_only=True``: no code runs) into ``module``; its keys and shapes must match exactly."""
    import torch
    p = given_file(path, "--weights", "state dict", "give the file torch.save(model.state_dict(), PATH) wrote")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FastSNNError(f"--weights {path} cannot be loaded with torch.load(weights_only=True) "
                           f"({one_line(e)}): save torch.save(model.state_dict(), PATH)") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        what = type(state).__name__ if not isinstance(state, dict) else "dict of other things than tensors"
        raise FastSNNError(f"--weights {path} holds a {what}, not a state dict: save "
                           "torch.save(model.state_dict(), PATH)")
    want = module.state_dict()
    missing, unexpected = set(want) - set(state), set(state) - set(want)
    if missing or unexpected:
        parts = ([f"missing keys {_names(missing)}"] if missing else []) + \
                ([f"unexpected keys {_names(unexpected)}"] if unexpected else [])
        raise FastSNNError(f"--weights {path} does not fit the model: {'; '.join(parts)}: save the state_dict "
                           "of the same model (same --model-args)")
    for k, v in state.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise FastSNNError(f"--weights {path}: {k} has shape {tuple(v.shape)}, the model's "
                               f"{tuple(want[k].shape)}: save the state_dict of the same model (same --model-args)")
    module.load_state_dict(state)


def prepare(model, args, weights, input_shape: tuple, n_classes: int, bits: int, seed: int = 0):
    """(module, spec) of a user model for training on inputs of ``input_shape`` with ``n_classes`` classes:
    ``model`` is a spec string (:func:`load_model`, its initial weights drawn after ``torch.manual_seed(seed)``,
    so that a seeded run repeats) or an ``nn.Module``; ``weights`` a state dict file or None.

    The module is converted once here (:func:`fastsnn_lava.fx.convert`), so a model the converter
    refuses fails before any training, and the spec is known for resuming."""
    import torch
    import torch.nn as nn

    from .fx import convert
    torch.manual_seed(seed)
    if isinstance(model, nn.Module):
        if args:
            raise FastSNNError("model_args apply to a model spec string, not to a module passed in")
        module = model
    else:
        module = load_model(model, args)
    if weights:
        load_weights(module, weights)
    c = convert(module, tuple(input_shape))
    if c.n_classes != n_classes:
        raise FastSNNError(f"the model returns {c.n_classes} logits but the dataset has {n_classes} classes: "
                           "give the classifier that many outputs")
    if c.bits is not None and c.bits != int(bits):
        raise FastSNNError(f"the model's QReLU modules ask for {c.bits} bits, not {bits}: pass --bits {c.bits}")
    return module, c.spec


def describe(model) -> str:
    """The name a checkpoint records as its ``arch``: the spec string, or the module's class name."""
    return model if isinstance(model, str) else type(model).__name__
