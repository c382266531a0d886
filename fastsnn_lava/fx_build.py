"""The spec and the float network of a walked model (:mod:`fastsnn_lava.fx` finds its layers).

:func:`build_spec` turns the hidden layers the walk found (each a main term, shortcut terms and a
bias, all folded; a grouped shortcut, e.g. a pooling added as it is, becomes its full block-diagonal
weight) and the output value (its maps absorbed, :mod:`fastsnn_lava.fx_maps`) into this project's
spec; :func:`load_folded` writes the folded weights into the float network
:func:`~fastsnn_lava.models.build_float` builds from that spec. A BatchNorm of the float network that
only adds a bias is set to compute ``x + β`` exactly (:func:`set_bn`: γ = 1, μ = 0, σ² = 1 − ε).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .fx_maps import dense_weight, resolved
from .fx_patterns import Act, Cat, Input, Pre, Term, View, fail, refuse_cat
from .models import ResidualNet
from .spec import layer_shapes


def build_spec(layers: list[dict], out, input_shape: tuple) -> tuple[list, int, list]:
    """(spec, n_classes, folded weights) from the hidden layers the walk found and the output value
    ``out`` (one Linear term: the classifier)."""
    if isinstance(out, Act):
        fail("a model that ends in an activation", "end with a Linear classifier (no activation after it)")
    if isinstance(out, Cat):
        refuse_cat(out)
    terms = resolved(out, "the classifier") if isinstance(out, Pre) else []
    if len(terms) != 1 or terms[0].kind != "dense":
        fail("a model whose output is not one Linear layer", "end with a Linear classifier (its input "
             "flattened or average-pooled, from one activation); residual additions must end in an activation")
    classifier = terms[0]
    src = classifier.src.src if isinstance(classifier.src, View) else classifier.src
    if (0 if isinstance(src, Input) else src.index) != len(layers):
        fail("a classifier that does not read the last activation", "feed the last activation to the classifier")
    spec, folded = [], []
    for i, layer in enumerate(layers, start=1):
        main = layer["main"]
        entry = spec_entry(main, layer["shape"][0])
        if isinstance(main.src, View) and main.src.pool:
            spec.append({"kind": "avgpool"})
        sk_specs, sk_weights = [], []
        for t in layer["skips"]:
            j = t.src.src.index if isinstance(t.src, View) else t.src.index
            if t.kind == "identity":
                sk_specs.append({"from": j})
                sk_weights.append(None)
            else:  # a grouped shortcut (a pooling added as it is) as its full block-diagonal weight
                groups = t.geometry.get("groups", 1)
                sk_specs.append(dict({"from": j, "kind": t.kind}, **{k: v for k, v in t.geometry.items()
                                                                      if k != "groups"}))
                sk_weights.append(dense_weight(t.weight, groups) if groups != 1 else t.weight)
        if sk_specs:
            entry["skips"] = sk_specs
        if "alpha_max" in layer:
            entry["alpha_max"] = float(layer["alpha_max"])
        spec.append(entry)
        folded.append({"weight": main.weight, "bias": layer["bias"], "skips": sk_weights})
    if isinstance(classifier.src, View) and classifier.src.pool:
        spec.append({"kind": "avgpool"})
    folded.append({"weight": classifier.weight, "bias": out.bias, "skips": []})
    n_classes = out.shape[0]
    shapes = layer_shapes(spec, input_shape, n_classes)
    for (s, _, o), layer in zip(shapes, layers):
        if tuple(o) != tuple(layer["shape"]):
            raise AssertionError(f"traced shape {layer['shape']} differs from the spec's {o} at {layer['name']}")
    return spec, n_classes, folded


def spec_entry(t: Term, n_out: int) -> dict:
    """The spec entry of a layer whose main term is ``t``."""
    if t.kind == "conv":
        return {"kind": "conv", "out": n_out, **t.geometry}
    return {"kind": "dense", "out": n_out}


def set_bn(bn: nn.Module, beta: torch.Tensor) -> None:
    """A BatchNorm that computes ``x + β`` in eval mode: γ = 1, μ = 0, σ² = 1 − ε."""
    bn.weight.fill_(1.0)
    bn.bias.copy_(beta)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


@torch.no_grad()
def load_folded(float_net: nn.Module, folded: list) -> None:
    if isinstance(float_net, ResidualNet):
        for i, f in enumerate(folded):
            float_net.syn[i].weight.copy_(f["weight"].view_as(float_net.syn[i].weight))
            if isinstance(float_net.bn[i], nn.Identity):
                float_net.syn[i].bias.copy_(f["bias"])
            else:
                set_bn(float_net.bn[i], f["bias"])
            for syn, bn, w in zip(float_net.skip_syn[i], float_net.skip_bn[i], f["skips"]):
                if w is not None:
                    syn.weight.copy_(w.view_as(syn.weight))
                    set_bn(bn, torch.zeros_like(bn.bias))
        return
    mods = list(float_net)
    weights = [i for i, m in enumerate(mods) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, f in zip(weights, folded):
        mods[i].weight.copy_(f["weight"].view_as(mods[i].weight))
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            set_bn(nxt, f["bias"])
        else:
            mods[i].bias.copy_(f["bias"])
