"""The integer network description: the single source of truth.

The trainer's conversion produces a :class:`Network`, the netx exporter writes
it, the netx loader rebuilds it, and the reference simulation, the Lava loader
and every report consume it. All numbers in it are integers in one unit per
layer, so that every consumer computes exactly the same thing.

A layer ``l`` receives per time step ``t = 1..T`` the current

    I^l(t) = W^l · s^{l-1}(t) + b^l                      (hidden and output layers)
    I^1(t) = W^1 · x + b^1                               (first layer: the raw integer
                                                          input x, the same every step)

where ``s^{l-1}(t) ∈ {-1, 0, +1}`` are the signed spikes of the layer before.
A layer may also receive residual (shortcut) synapses from earlier hidden
layers (:class:`Skip`): each adds ``S^{l,j} · s^j(t)``, the spikes of layer ``j``
*of the same time step t*, so that

    I^l(t) = W^l · s^{l-1}(t) + Σ_j S^{l,j} · s^j(t) + b^l.

An identity shortcut is a diagonal synapse (a 1×1 conv or a square dense) whose
diagonal holds one integer code; a projection shortcut is any 1×1 (or k×k)
conv / dense code tensor.
Its neuron (:mod:`fastsnn_lava.neuron`) is either an integrate-and-fire neuron
(:class:`~fastsnn_lava.neuron.SignedIF` or :class:`~fastsnn_lava.neuron.UnsignedIF`)
with threshold ``θ^l`` (an even integer, so that the initial membrane ``θ^l / 2`` is
an integer too), or, for the last layer, an :class:`~fastsnn_lava.neuron.Accumulator`
whose output is ``Σ_t I^L(t)``.

Running ``T = 2^b - 1`` steps, the spike count ``N^l = Σ_t s^l(t)`` of a layer
equals the quantized ANN's integer activation level when there is no sequential
error (see :mod:`fastsnn_lava.reference`).

The same description holds a network of Lava's CUBA LIF neurons
(:class:`~fastsnn_lava.neuron.CubaLIF`, every layer; ``family == "cuba"``, simulated by
:mod:`fastsnn_lava.lif`): it runs ``timesteps`` active steps in windows of
``reset_interval`` (``bits`` optional), may start with an ``identity`` layer (slayer's
input neurons: no synapse), a dense layer may carry synaptic ``delay`` s, and its
bias is per neuron or per channel. It has no skips.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import numpy as np

from .errors import FastSNNError
from .neuron import Accumulator, CubaLIF, SignedIF, UnsignedIF, if_neuron

NEURONS = (SignedIF, UnsignedIF, Accumulator, CubaLIF)
KINDS = ("dense", "conv")
MAX_DELAY = 62  # netx's DelayDense max_delay


def pair(v) -> tuple[int, int]:
    if np.ndim(v) == 0:
        return (int(v), int(v))
    v = tuple(int(a) for a in np.asarray(v).ravel())
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def conv_out_hw(h: int, w: int, kernel: tuple[int, int], stride, padding, dilation) -> tuple[int, int]:
    """Output height and width of a 2-D convolution, as torch computes them."""
    out = []
    for size, k, s, p, d in zip((h, w), kernel, stride, padding, dilation):
        out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


@dataclass
class Skip:
    """A shortcut synapse into a layer from the spikes of an earlier hidden layer.

    ``source`` is the 1-based index of the sending layer in ``Network.layers``
    (layer ``j`` sends ``s^j``); the network input cannot be a source (start
    with a stem layer). ``kind``/``weight``/geometry follow :class:`Layer`:
    ``in_shape`` is the source layer's output shape and the output shape is the
    receiving layer's. The skip has no bias and no neuron of its own: its
    current is added to the receiving layer's current in the same step.
    """

    source: int
    kind: str
    weight: np.ndarray
    in_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    def __post_init__(self):
        self.source = int(self.source)
        if self.kind not in KINDS:
            raise FastSNNError(f"skip kind {self.kind!r} is not supported: use one of {KINDS}")
        self.weight = _int_codes(self.weight, "skip weight")
        self.in_shape = tuple(int(a) for a in self.in_shape)
        self.stride, self.padding, self.dilation = (pair(self.stride), pair(self.padding), pair(self.dilation))
        self.groups = int(self.groups)

    def check(self, out_shape: tuple) -> None:
        """Shape checks against the receiving layer's output shape."""
        if self.kind == "dense" and len(self.in_shape) != 1:
            raise FastSNNError(f"a dense skip needs a flat (N,) source, got {self.in_shape}: use a 1×1 conv skip")
        _check_synapse(self, out_shape, "skip ")

    def equals(self, other: "Skip") -> bool:
        return _fields_equal(self, other)


def reset_window(timesteps: int) -> int:
    """Steps per sample window: the next power of two above T (Loihi 2 needs a power of two)."""
    return 1 << int(timesteps).bit_length()


def _int_codes(arr, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise FastSNNError(f"{what} holds non-integer values: export integers only")
    return arr.astype(np.int64)


def _check_synapse(syn, out_shape: tuple, what: str) -> None:
    """Weight shape and conv geometry of a layer's or skip's synapse against in/out shapes."""
    if syn.kind == "dense":
        n_out = int(np.prod(out_shape))
        if syn.weight.ndim != 2 or syn.weight.shape != (n_out, int(np.prod(syn.in_shape))):
            raise FastSNNError(
                f"{what}dense weight shape {syn.weight.shape} does not match in {syn.in_shape} / out {out_shape}")
    else:
        if syn.weight.ndim != 4 or len(syn.in_shape) != 3 or len(out_shape) != 3:
            raise FastSNNError(f"{what}conv synapses need a 4-D weight and (C, H, W) shapes")
        n_out, (c_out, c_in_g, kh, kw) = out_shape[0], syn.weight.shape
        if min(syn.stride) < 1 or min(syn.dilation) < 1 or min(syn.padding) < 0 or syn.groups < 1:
            raise FastSNNError(f"{what}conv geometry stride {syn.stride}, dilation {syn.dilation}, padding "
                               f"{syn.padding}, groups {syn.groups}: stride, dilation and groups must be ≥ 1, "
                               "padding ≥ 0")
        if c_out != n_out or c_in_g * syn.groups != syn.in_shape[0]:
            raise FastSNNError(
                f"{what}conv weight {syn.weight.shape} does not match in {syn.in_shape} / out {out_shape}")
        hw = conv_out_hw(syn.in_shape[1], syn.in_shape[2], (kh, kw), syn.stride, syn.padding, syn.dilation)
        if hw != tuple(out_shape[1:]):
            raise FastSNNError(f"{what}conv output shape {out_shape} does not match the geometry (expected {hw})")


def _fields_equal(a, b) -> bool:
    """Exact equality of every dataclass field (arrays element-wise, lists item-wise)."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)):
                return False
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y) or not all(p.equals(q) for p, q in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


@dataclass
class Layer:
    """One synaptic layer and the neurons it drives.

    ``weight``: int64, ``(out, in)`` for dense (``in`` in torch's ``flatten()``
    order of the previous layer's ``(C, H, W)``), ``(out, in/groups, kH, kW)`` for
    conv (torch's correlation layout), None for a CUBA ``identity`` layer. ``bias``:
    int64 ``(out,)`` or ``(C_out,)``, added every step (a CUBA layer's: per channel
    or per neuron, netx's ``bias_mant``). ``neuron``: one record of
    :mod:`fastsnn_lava.neuron` (θ is ``neuron.threshold``). Shapes are torch's
    ``(C, H, W)`` or ``(N,)``. ``skips``: shortcut synapses from earlier layers
    (:class:`Skip`, IF networks only), empty for a plain feed-forward layer.
    ``delay``: a CUBA dense layer's synaptic delays ``D`` (int, shaped like
    ``weight``, 0..62 steps) or None.
    """

    kind: str
    weight: np.ndarray | None
    bias: np.ndarray
    neuron: SignedIF | UnsignedIF | Accumulator | CubaLIF
    in_shape: tuple
    out_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    skips: list = field(default_factory=list)
    delay: np.ndarray | None = None

    def __post_init__(self):
        cuba = isinstance(self.neuron, CubaLIF)
        if self.kind not in KINDS + (("identity",) if cuba else ()):
            raise FastSNNError(f"layer kind {self.kind!r} is not supported: use one of {KINDS}"
                               + (" or identity" if cuba else ""))
        if not isinstance(self.neuron, NEURONS):
            raise FastSNNError(f"neuron {self.neuron!r} is not supported: use one of "
                               f"{tuple(n.__name__ for n in NEURONS)} (fastsnn_lava.neuron)")
        if self.kind != "identity":
            self.weight = _int_codes(self.weight, f"{self.kind} layer weight")
        elif self.weight is not None:
            raise FastSNNError("an identity layer has no weight")
        self.bias = _int_codes(self.bias, f"{self.kind} layer bias")
        self.in_shape = tuple(int(a) for a in self.in_shape)
        self.out_shape = tuple(int(a) for a in self.out_shape)
        self.stride, self.padding, self.dilation = (pair(self.stride), pair(self.padding), pair(self.dilation))
        self.groups = int(self.groups)
        self._check_shapes()
        if cuba:
            self._check_cuba()
        elif self.delay is not None:
            raise FastSNNError("synaptic delays belong to CUBA layers: an IF layer has none")

    def _check_shapes(self):
        for name in ("in_shape", "out_shape"):
            shape = getattr(self, name)
            if not 1 <= len(shape) <= 3 or min(shape) < 1:
                raise FastSNNError(f"{self.kind} layer {name} {shape} must have 1 to 3 positive sizes")
        if self.kind != "identity":
            _check_synapse(self, self.out_shape, "")
        elif int(np.prod(self.in_shape)) != self.num_neurons:
            raise FastSNNError(f"identity layer in {self.in_shape} / out {self.out_shape} differ in size")
        if not isinstance(self.neuron, CubaLIF) and self.bias.shape != (self.out_shape[0],):
            raise FastSNNError(f"bias shape {self.bias.shape} does not match {self.out_shape[0]} outputs")
        self.skips = list(self.skips)
        for skip in self.skips:
            if not isinstance(skip, Skip):
                raise FastSNNError(f"a layer's skips must be ir.Skip objects, got {type(skip).__name__}")
            skip.check(self.out_shape)

    def _check_cuba(self):
        self.bias = self.bias.ravel()
        if self.bias.size not in (self.out_shape[0] if self.kind == "conv" else self.num_neurons, self.num_neurons):
            raise FastSNNError(f"bias of {self.bias.size} values fits neither the channels nor the "
                               f"{self.num_neurons} neurons of out {self.out_shape}")
        if self.skips:
            raise FastSNNError("a CUBA layer has no residual skips (vanilla netx has none)")
        if self.delay is None:
            return
        self.delay = np.asarray(self.delay).astype(np.int64)
        if self.kind != "dense":
            raise FastSNNError(f"synaptic delays on a {self.kind} layer are not supported: netx delays dense "
                               "layers only")
        if self.delay.shape != self.weight.shape:
            raise FastSNNError(f"delay {self.delay.shape} does not match the weight {self.weight.shape}")
        if self.delay.size and (self.delay.min() < 0 or self.delay.max() > MAX_DELAY):
            raise FastSNNError(f"delays in [{self.delay.min()}, {self.delay.max()}] lie outside netx's "
                               f"0..{MAX_DELAY} steps")

    @property
    def threshold(self) -> int | None:
        """θ of IF neurons; None for an accumulator or a CUBA layer (whose threshold is ``neuron.vth``)."""
        return self.neuron.threshold

    @property
    def signed(self) -> bool:
        """Whether the neurons are signed IF neurons (spikes in {-1, 0, +1})."""
        return self.neuron.signed

    @property
    def accumulates(self) -> bool:
        """Whether this is the accumulating output layer (no threshold, output Σ_t I(t))."""
        return self.neuron.accumulates

    @property
    def v_init(self) -> int:  # the initial membrane θ/2 of an IF layer (0 for an accumulator or a CUBA layer)
        return 0 if self.threshold is None else self.threshold // 2

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.out_shape))

    def equals(self, other: "Layer") -> bool:
        """Exact equality of every field (arrays compared element-wise, skips item by item)."""
        return _fields_equal(self, other)


FAMILIES = {"if": "IF neurons (signed_if/unsigned_if, then an accumulator)", "cuba": "CUBA LIF neurons"}


@dataclass
class Network:
    """A feed-forward integer spiking network of one neuron family (:attr:`family`).

    IF family: ``bits`` is b, the activation bits of the quantized ANN; the SNN runs
    ``T = 2^b - 1`` steps per sample in windows of ``R`` = :func:`reset_window` (T)
    (``timesteps``/``reset_interval`` follow from ``bits``; given, they must agree).
    CUBA family: ``timesteps`` and ``reset_interval ≥ timesteps`` are required,
    ``bits`` (the QANN's, when the network was converted) optional.
    ``input_max`` is the largest raw input value (255 for 8-bit pixels), used for range
    checks. ``meta`` holds JSON-able provenance (dataset, architecture, training accuracies).
    """

    input_shape: tuple
    layers: list
    bits: int | None = None
    input_max: int = 255
    meta: dict = field(default_factory=dict)
    timesteps: int | None = None
    reset_interval: int | None = None

    def __post_init__(self):
        self.input_shape = tuple(int(a) for a in self.input_shape)
        self.input_max = int(self.input_max)
        if not 1 <= len(self.input_shape) <= 3 or min(self.input_shape) < 1 or self.input_max < 1:
            raise FastSNNError(f"input shape {self.input_shape} / input_max {self.input_max} are not valid")
        if not self.layers:
            raise FastSNNError("a network needs at least one layer")
        families = {layer.neuron.family for layer in self.layers}
        if len(families) != 1:
            raise FastSNNError("a network has one neuron family: its layers mix IF and CUBA LIF neurons")
        if self.bits is not None:
            self.bits = int(self.bits)
            if not 1 <= self.bits <= 8:
                raise FastSNNError(f"activation bits must be 1..8, got {self.bits}")
        if self.family == "if":
            self._window_from_bits()
        else:
            self._check_cuba()
        self._check_chain()

    def _window_from_bits(self):
        if self.bits is None:
            raise FastSNNError("an IF network needs its activation bits b (it runs T = 2^b - 1 steps)")
        T = 2 ** self.bits - 1
        for name, value in (("timesteps", T), ("reset_interval", reset_window(T))):
            if getattr(self, name) is not None and int(getattr(self, name)) != value:
                raise FastSNNError(f"an IF network of {self.bits} bits has {name} {value}, "
                                   f"got {getattr(self, name)}")
            setattr(self, name, value)

    def _check_cuba(self):
        if self.timesteps is None or self.reset_interval is None:
            raise FastSNNError("a CUBA network needs its timesteps and reset_interval")
        self.timesteps, self.reset_interval = int(self.timesteps), int(self.reset_interval)
        if self.timesteps < 1 or self.reset_interval < self.timesteps:
            raise FastSNNError(f"timesteps {self.timesteps} / reset interval {self.reset_interval} are not valid")
        if any(layer.kind == "identity" for layer in self.layers[1:]):
            raise FastSNNError("only the first layer of a CUBA network can be an identity (input-neuron) layer")

    def _check_chain(self):
        prev = self.input_shape
        for i, layer in enumerate(self.layers):
            if int(np.prod(layer.in_shape)) != int(np.prod(prev)) or (
                    layer.kind == "conv" and tuple(layer.in_shape) != tuple(prev)):
                raise FastSNNError(f"layer {i + 1} expects input {layer.in_shape} but gets {prev}")
            for skip in layer.skips:
                if not 1 <= skip.source <= i:
                    raise FastSNNError(f"layer {i + 1}: a skip must come from an earlier hidden layer "
                                       f"1..{i}, got {skip.source}")
                src = self.layers[skip.source - 1].out_shape
                if skip.in_shape != tuple(src):
                    raise FastSNNError(f"layer {i + 1}: skip from layer {skip.source} expects input "
                                       f"{skip.in_shape} but gets {src}")
            last = i == len(self.layers) - 1
            if self.family == "if" and last != layer.accumulates:
                raise FastSNNError(f"layer {i + 1}: only the last layer accumulates, every other layer has IF neurons")
            prev = layer.out_shape

    @property
    def family(self) -> str:
        """``"if"`` (signed/unsigned IF hidden layers, an accumulating output) or ``"cuba"`` (CUBA LIF)."""
        return self.layers[0].neuron.family

    def require(self, family: str, what: str) -> None:
        """Refuse, in one line, an operation ``what`` that only a ``family`` network supports."""
        if self.family != family:
            raise FastSNNError(f"{what} needs a network of {FAMILIES[family]}; this one has "
                               f"{FAMILIES[self.family]}")

    @property
    def readout(self) -> str:
        """How the last layer is read: ``sum`` (an accumulator), ``voltage`` (a never-firing CUBA
        layer's membrane) or ``spikes`` (its spike counts)."""
        neuron = self.layers[-1].neuron
        if neuron.accumulates:
            return "sum"
        return "voltage" if isinstance(neuron, CubaLIF) and neuron.never_fires else "spikes"

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].out_shape

    def with_neuron(self, neuron: str) -> "Network":
        """The same network with every hidden IF neuron replaced by ``neuron`` (``signed_if``/``unsigned_if``)."""
        self.require("if", "--neuron signed/unsigned")
        if neuron not in ("signed_if", "unsigned_if"):
            raise FastSNNError(f"--neuron must be signed or unsigned, got {neuron!r}")
        layers = [layer if layer.accumulates else dataclasses.replace(layer, neuron=if_neuron(neuron, layer.threshold))
                  for layer in self.layers]
        return dataclasses.replace(self, layers=layers)

    @property
    def has_skips(self) -> bool:
        return any(layer.skips for layer in self.layers)

    def equals(self, other: "Network") -> bool:
        return (self.input_shape == other.input_shape and self.bits == other.bits
                and self.input_max == other.input_max and self.timesteps == other.timesteps
                and self.reset_interval == other.reset_interval and len(self.layers) == len(other.layers)
                and all(a.equals(b) for a, b in zip(self.layers, other.layers)))
