"""Differential fuzzer: random small integer networks on Lava against the reference, bit for bit.

Each case is a random :class:`~fastsnn_lava.ir.Network` built to hit the edges of netx's and Lava's
fixed-point synapses: weight matrices with no positive or no negative code, a largest code 0 or a
least code 0, a least code −2^j, −128 and 127 extremes, one repeated value, codes scaled by 2^j;
b = 1…8; dense and conv layers; dense and conv shortcuts (:class:`~fastsnn_lava.ir.Skip`); signed
and unsigned IF neurons; the largest thresholds and biases loihi2 allows. A case is either

* refused: by ``hardware.check_network(net, loihi2)`` or by ``write_network`` (one-line
  :class:`~fastsnn_lava.errors.FastSNNError`), counted by reason. With ``confirm``, a dense matrix
  refused because netx + Lava would not carry it exactly is written anyway as a one-layer network
  (T = 1, so the output is Lava's synaptic sum) and run on inputs in [0, X] (X = 1, or 255 where the
  matrix errs only on −1 spikes or large inputs), the first being the model's witness: the refusal is
  *confirmed* when Lava's outputs equal the model's prediction
  (:func:`~fastsnn_lava.netx.lava_weights.dense_output`) on every input and differ from ``W·x`` on the
  witness; a Lava output the model did not predict counts as a ``model_mismatch``; or
* run: ``run_lava`` on a batch of samples (the first all zero, the second all ``input_max``) must equal
  ``Engine(net).run(x)`` exactly, the engine must equal ``reference.snn_forward``, and where the SNN is
  exact by construction (one hidden layer at most: its input is constant) also the QANN's integers
  ``run_batches(net, x, qann_forward)``.

``python -m benchmarks.lava_fuzz --cases 500`` writes ``benchmarks/results/lava_fuzz.json``; the default
budget is ``$FASTSNN_FUZZ_CASES`` (200). ``tests/test_lava_exact.py`` runs the same fuzzer with a small one.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.neuron import Accumulator, if_neuron

FLAVORS = ("no_positive", "mixed", "max_zero", "pow2_min", "negative", "no_negative", "min_zero", "extremes",
           "single", "pow2_scaled", "pow2_min_with_positive")
WIDE = 0.03                      # chance that a synapse takes codes in [−256, 254] (beyond loihi2's 8 bits)
EDGES = (-128, -127, -64, -2, -1, 0, 1, 2, 64, 127)
THETA_MAX = 2 ** 17 - 2          # the largest even threshold of loihi2's 17-bit register
BIAS_EDGES = (-4096, 4095)       # loihi2's 13-bit bias
STEP_BUDGET = 320                # Lava steps per case: about (samples − 1)·R + L + T


def codes(rng, shape, flavor: str) -> np.ndarray:
    """Integer weight codes of ``shape`` with the edge property ``flavor`` (see FLAVORS)."""
    mag = int(rng.choice([1, 3, 9, 40, 127]))
    w = rng.integers(-mag, mag + 1, shape)
    size = int(np.prod(shape))
    pick = lambda: np.unravel_index(int(rng.integers(size)), shape)  # noqa: E731
    if flavor in ("no_positive", "max_zero", "negative", "pow2_min"):
        w = -np.abs(w) - (flavor == "negative")
    elif flavor in ("no_negative", "min_zero"):
        w = np.abs(w)
    elif flavor == "extremes":
        w = rng.choice(EDGES, shape)
    elif flavor == "single":
        w = np.full(shape, int(rng.choice([v for v in EDGES if v] + [-100, 3])))
    elif flavor == "pow2_scaled":
        w = np.clip(w * 2 ** int(rng.integers(1, 7)), -128, 127)
    elif flavor == "wide":
        w = rng.integers(-256, 255, shape)
    if flavor in ("pow2_min", "pow2_min_with_positive"):
        j = int(rng.integers(0, 8))
        w = np.maximum(w, -2 ** j) if flavor == "pow2_min" else np.clip(w, -2 ** j, 127)
        w[pick()] = -2 ** j
        if flavor == "pow2_min_with_positive":
            w[pick()] = int(rng.integers(1, 128))
            w[pick()] = -2 ** j
    if flavor in ("max_zero", "min_zero"):
        w[pick()] = 0
        w[pick()] = -max(1, mag) if flavor == "max_zero" else max(1, mag)
    return w.astype(np.int64)


def _theta(rng, fan_in: int, mag: int) -> int:
    r = rng.random()
    if r < 0.1:
        return THETA_MAX
    if r < 0.2:
        return 2
    return min(THETA_MAX, 2 * int(rng.integers(1, max(2, fan_in * mag // 2) + 1)))


def _bias(rng, n: int, mag: int) -> np.ndarray:
    b = rng.integers(-mag, mag + 1, n)
    if rng.random() < 0.15:
        b[int(rng.integers(n))] = int(rng.choice(BIAS_EDGES))
    return b


def _skips(rng, specs: list, target: int, flavor_of) -> list:
    """Up to one random shortcut into layer ``target`` (1-based) from a compatible earlier hidden layer."""
    kind, out_shape = specs[target - 1]["kind"], specs[target - 1]["out"]
    ok = [j for j in range(1, target) if specs[j - 1]["kind"] == kind
          and (kind == "dense" or specs[j - 1]["out"][1:] == out_shape[1:])]  # a 1×1 conv keeps H×W
    if not ok or rng.random() < 0.4:
        return []
    j = int(rng.choice(ok))
    src = specs[j - 1]["out"]
    shape = (out_shape[0], src[0], 1, 1) if kind == "conv" else (out_shape[0], src[0])
    return [Skip(j, kind, codes(rng, shape, flavor_of()), src)]


def _specs(rng, shape: tuple) -> list:
    """Layer shapes: 0–2 convs (1×1 or 3×3, 'same' padding) when the input is an image, 0–2 hidden dense
    layers, a dense output layer."""
    n_conv = int(rng.integers(0, 3)) if len(shape) == 3 else 0
    n_dense = int(rng.integers(0, 3))
    specs, prev = [], shape
    for i in range(n_conv + n_dense + 1):
        if i < n_conv:
            specs.append({"kind": "conv", "in": prev, "out": (int(rng.integers(1, 4)), *prev[1:]),
                          "k": int(rng.choice([1, 3]))})
        else:
            n = int(rng.integers(2, 5)) if i == n_conv + n_dense else int(rng.integers(2, 7))
            specs.append({"kind": "dense", "in": prev, "out": (n,)})
        prev = specs[-1]["out"]
    return specs


def _layer(rng, sp: dict, first: bool, last: bool, input_max: int, flavor_of) -> Layer:
    if sp["kind"] == "conv":
        w = codes(rng, (sp["out"][0], sp["in"][0], sp["k"], sp["k"]), flavor_of())
        geo = {"padding": (sp["k"] // 2, sp["k"] // 2)}
    else:
        w, geo = codes(rng, (sp["out"][0], int(np.prod(sp["in"]))), flavor_of()), {}
    mag = max(1, int(np.abs(w).max()))
    fan_in = int(np.prod(w.shape[1:])) * (input_max if first else 1)
    name = None if last else str(rng.choice(["signed_if", "unsigned_if"]))
    neuron = Accumulator() if last else if_neuron(name, _theta(rng, fan_in, mag))
    return Layer(sp["kind"], w, _bias(rng, sp["out"][0], mag), neuron, sp["in"], sp["out"], **geo)


def random_network(rng, case: int) -> Network:
    """A random network whose synapses take the FLAVORS in turn from ``case`` on, so every flavor is hit."""
    bits, input_max = int(rng.integers(1, 9)), int(rng.choice([1, 3, 15, 255]))
    counter = iter(range(10 ** 6))

    def flavor_of() -> str:
        return "wide" if rng.random() < WIDE else FLAVORS[(case + next(counter)) % len(FLAVORS)]
    shape = ((int(rng.integers(1, 3)), int(rng.integers(3, 5)), int(rng.integers(3, 5))) if rng.random() < 0.5
             else (int(rng.integers(2, 7)),))
    specs = _specs(rng, shape)
    layers = []
    for i, sp in enumerate(specs):
        layer = _layer(rng, sp, i == 0, i == len(specs) - 1, input_max, flavor_of)
        layer.skips = _skips(rng, specs, i + 1, flavor_of) if i > 0 else []
        layers.append(layer)
    return Network(shape, layers, bits=bits, input_max=input_max)


def reason_key(stage: str, message: str) -> str:
    """A short, number-free name for a refusal message."""
    table = [("not exact in netx + Lava", "dense synapse not exact in netx + Lava"),
             ("all weights are zero", "all-zero weights"), ("outside [-256, 254]", "dense codes outside [-256, 254]"),
             ("-bit synaptic output", "conv output beyond 24 bits"), ("int32 synaptic sum", "int32 sum"),
             ("-bit weights", "weights beyond 8 bits"), ("threshold", "threshold beyond 17 bits"),
             ("biases", "bias beyond 13 bits"), ("membrane", "membrane beyond 24 bits")]
    for needle, key in table:
        if needle in message:
            return f"{stage}: {key}"
    return f"{stage}: other ({message[:60]})"


@contextlib.contextmanager
def without_exactness_check():
    """Write and load files without ``check_netx_weights`` (to confirm that a refusal was needed)."""
    from fastsnn_lava.lava import loader
    from fastsnn_lava.netx import write
    saved = write.check_netx_weights, loader.check_netx_weights
    write.check_netx_weights = loader.check_netx_weights = lambda net: None
    try:
        yield
    finally:
        write.check_netx_weights, loader.check_netx_weights = saved


def samples(rng, net: Network) -> np.ndarray:
    """A batch that fits STEP_BUDGET Lava steps: all zero, all ``input_max``, then random inputs."""
    n = int(np.clip(STEP_BUDGET // 2 ** net.bits, 2, 12))
    x = rng.integers(0, net.input_max + 1, (n, *net.input_shape))
    x[0], x[1] = 0, net.input_max
    return x


def lava_outputs(net: Network, x: np.ndarray, path: Path) -> np.ndarray:
    from fastsnn_lava.lava.runner import run_lava
    from fastsnn_lava.netx import write_network
    write_network(net, path)
    return run_lava(path, x, progress=False)[0]


def references(net: Network, x: np.ndarray) -> dict:
    """The engine's outputs, the specification's, and the QANN's where the SNN equals it by construction."""
    from fastsnn_lava.engine import Engine
    from fastsnn_lava.reference import qann_forward, run_batches, snn_forward
    ref = {"engine": Engine(net, device="cpu").run(x), "spec": run_batches(net, x, snn_forward)}
    if len(net.layers) <= 2:
        ref["qann"] = run_batches(net, x, qann_forward)
    return ref


def refused_matrix(net: Network):
    """The first ``/layer`` dense matrix that netx + Lava would not carry exactly, or None."""
    from fastsnn_lava.netx.lava_weights import dense_verdict
    from fastsnn_lava.netx.write import synapse_domain
    for i, layer in enumerate(net.layers, start=1):
        if layer.kind == "dense" and not dense_verdict(layer.weight, *synapse_domain(net, i)).exact:
            return layer.weight
    return None


def confirm_on_lava(w: np.ndarray, rng, path: Path) -> dict:
    """Run the refused matrix ``w`` alone on Lava (written without the check): does Lava do what the model says?"""
    from fastsnn_lava.lava.runner import run_lava
    from fastsnn_lava.netx import write_network
    from fastsnn_lava.netx.lava_weights import dense_effective, dense_output, dense_verdict
    m, n = w.shape
    X = next((X for X in (1, 255) if not dense_verdict(w, 0, X).exact), 255)  # Lava errs on inputs in [0, X]
    verdict = dense_verdict(w, 0, X)
    x = rng.integers(0, X + 1, (6, n))
    x[1] = X
    if verdict.witness is not None:
        x[0] = verdict.witness[1]
    net = Network((n,), [Layer("dense", w, np.zeros(m, np.int64), Accumulator(), (n,), (m,))], bits=1,
                  input_max=X)
    with without_exactness_check():
        write_network(net, path)
        lava = run_lava(path, x, progress=False, hw=None)[0]
    predicted = dense_output(dense_effective(w), x.T).T
    return {"model_matches_lava": bool(np.array_equal(lava, predicted)),
            "differs_on_witness": bool(not np.array_equal(lava[0], w @ x[0]))}


def run_case(net: Network, rng, path: Path, confirm: bool) -> dict:
    """The outcome of one case: ``refused`` (a reason, maybe confirmed on Lava) or ``ran`` with the comparisons."""
    from fastsnn_lava.hardware import check_network, load_target
    from fastsnn_lava.netx.write import check_netx_weights
    x = samples(rng, net)
    try:
        check_network(net, load_target("loihi2"))
    except FastSNNError as e:
        return {"refused": reason_key("hardware", str(e))}
    try:
        check_netx_weights(net)
    except FastSNNError as e:
        out = {"refused": reason_key("export", str(e)), "message": str(e)}
        w = refused_matrix(net) if confirm and "not exact in netx + Lava" in str(e) else None
        if w is not None:
            out.update(confirm_on_lava(w, rng, path))
        return out
    lava, ref = lava_outputs(net, x, path), references(net, x)
    out = {"ran": True, "samples": len(x), "lava_equals_engine": bool(np.array_equal(lava, ref["engine"])),
           "engine_equals_spec": bool(np.array_equal(ref["engine"], ref["spec"]))}
    if "qann" in ref:
        out["lava_equals_qann"] = bool(np.array_equal(lava, ref["qann"]))
    return out


def features(net: Network) -> list:
    """The edges a network covers, for the coverage table of the networks that ran."""
    from fastsnn_lava.netx.lava_weights import is_pow2
    syn = [l.weight for l in net.layers] + [s.weight for l in net.layers for s in l.skips]
    f = {f"b={net.bits}", f"input_max={net.input_max}"}
    f |= {f"{l.kind} layer" for l in net.layers} | {f"{s.kind} skip" for l in net.layers for s in l.skips}
    f |= {f"{l.neuron.name} neuron" for l in net.layers[:-1]}
    f |= {"threshold 2^17-2" for l in net.layers if l.threshold == THETA_MAX}
    f |= {"bias -4096 or 4095" for l in net.layers if np.isin(l.bias, BIAS_EDGES).any()}
    f |= {"synapse without positive code" for w in syn if w.max() <= 0}
    f |= {"synapse without negative code" for w in syn if w.min() >= 0}
    f |= {"synapse with max 0" for w in syn if w.max() == 0} | {"synapse with min 0" for w in syn if w.min() == 0}
    f |= {"synapse with min -2^j" for w in syn if is_pow2(-int(w.min()))}
    f |= {"synapse with code -128" for w in syn if w.min() == -128} | {"synapse with code 127" for w in syn
                                                                         if w.max() == 127}
    f |= {"synapse of one value" for w in syn if w.min() == w.max()}
    bad = lambda w: w.max() <= 0 and is_pow2(-int(w.min()))  # noqa: E731  (what netx's encoding corrupts)
    f |= {"conv layer, no positive code, min -2^j" for l in net.layers if l.kind == "conv" and bad(l.weight)}
    f |= {f"{s.kind} skip, no positive code, min -2^j" for l in net.layers for s in l.skips if bad(s.weight)}
    return sorted(f)


def describe(net: Network) -> str:
    kinds = "-".join(l.kind[0] + ("+s" if l.skips else "") for l in net.layers)
    return f"b={net.bits} in={net.input_shape} max={net.input_max} {kinds}"


def _tally(out: dict, net: Network, case: int, table: Counter, refused: Counter, coverage: Counter,
           failures: list) -> None:
    """Add one case's outcome to the tables."""
    if "refused" in out:
        refused[out["refused"]] += 1
        if "model_matches_lava" in out:
            table["refusals_run_on_lava"] += 1
            table["refusals_confirmed"] += out["model_matches_lava"] and out["differs_on_witness"]
            table["model_mismatch"] += not out["model_matches_lava"]
        return
    table["ran"] += 1
    table["samples_run"] += out["samples"]
    table["qann_checked"] += "lava_equals_qann" in out
    coverage.update(features(net))
    bad = [k for k in ("lava_equals_engine", "engine_equals_spec", "lava_equals_qann") if out.get(k) is False]
    table["disagreements"] += bool(bad)
    if bad:
        failures.append({"case": case, "net": describe(net), "failed": bad})


def fuzz(cases: int, seed: int = 0, confirm: bool = True, log=None) -> dict:
    """Run ``cases`` random networks; returns the outcome table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    table, refused, coverage, failures = Counter(), Counter(), Counter(), []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(cases):
            net = random_network(rng, case)
            out = run_case(net, rng, Path(tmp) / f"case{case}.h5", confirm)
            _tally(out, net, case, table, refused, coverage, failures)
            if log:
                log(f"case {case}: {describe(net)}: {out.get('refused', 'ran')}"
                    + (f" (model = Lava: {out['model_matches_lava']}, Lava ≠ W·x on the witness: "
                       f"{out['differs_on_witness']})" if "model_matches_lava" in out else ""))
    keys = ("ran", "samples_run", "qann_checked", "disagreements", "refusals_run_on_lava", "refusals_confirmed",
            "model_mismatch")
    return {"cases": cases, "seed": seed, "refused": dict(sorted(refused.items())),
            "refused_total": sum(refused.values()), **{k: table[k] for k in keys},
            "ran_with": dict(sorted(coverage.items())), "failures": failures,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Differential fuzzer: random edge-case networks, Lava vs the reference.")
    p.add_argument("--cases", type=int, default=int(os.environ.get("FASTSNN_FUZZ_CASES", "200")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-confirm", action="store_true",
                   help="do not run refused matrices on Lava to confirm the refusal")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    result = fuzz(a.cases, a.seed, not a.no_confirm, None if a.quiet else print)
    from benchmarks.common import write_result
    path = write_result("lava_fuzz", result)
    print({k: v for k, v in result.items() if k != "failures"})
    print(f"wrote {path}")
    if result["disagreements"] or result["model_mismatch"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
