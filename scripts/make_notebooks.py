"""Write the notebooks in notebooks/ from the cell lists below (outputs empty).

The notebooks are generated so their code stays reviewable as plain Python;
tests/test_notebooks.py executes them (nbclient) and fails on any error.

    .venv/bin/python scripts/make_notebooks.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"

QUICKSTART = [
    ("md", """# 01 · Quick start: train → export → Lava, on digits

Fast-SNN in four calls of the Python API (each mirrors a command-line tool):
a 2-bit quantized ANN needs only **T = 2² − 1 = 3 time steps** as a spiking network.
Runs in about a minute on 2 CPU cores. Files go to the notebook's folder."""),
    ("code", """from fastsnn_lava import pipeline

# fastsnn-train --dataset digits --arch mlp --bits 2 -o model.pt
qann, float_net, meta = pipeline.train("digits", "mlp", bits=2, out="model.pt", epochs=20, qat_epochs=20)
print(f"float ANN {meta['float_test_accuracy']:.2%}   2-bit QANN {meta['qann_test_accuracy']:.2%}")"""),
    ("md", """## Export: the integer network

`pipeline.export` (= `fastsnn-export model.pt -o net.h5`) converts the checkpoint into integer
weights, biases and even thresholds θ, checks them against Loihi 2's limits and writes a
lava-dl netx HDF5 file. The hidden neurons are signed integrate-and-fire neurons:

    v ← v + I(t);  s(t) = +1 if v ≥ θ;  s(t) = −1 if v < 0 and the neuron has a spike to take back;  v ← v − s(t)·θ

starting from v = θ/2, so that the spike count over T steps is the ANN's level round(T·I/θ)."""),
    ("code", """net = pipeline.export("model.pt", "net.h5")
for i, layer in enumerate(net.layers, 1):
    print(f"layer {i}: {layer.kind:5} weight {str(layer.weight.shape):10} θ = {layer.threshold}  neuron {layer.neuron.name}")
print("T =", net.timesteps)"""),
    ("md", "## Run: the reference simulation on the whole test set, then Lava's CPU simulator"),
    ("code", """ref = pipeline.run("net.h5", "digits", backend="reference", progress=False)
print(f"reference SNN {ref['snn_accuracy']:.2%} on {ref['samples']} samples, QANN {ref['qann_accuracy']:.2%}")
lava = pipeline.run("net.h5", "digits", backend="lava-sim", samples=48, progress=False)
print(f"Lava {lava['snn_accuracy']:.2%} on {lava['samples']} samples; "
      f"identical integer outputs to the reference on {lava['reference_agreement']:.0%} of them")
assert lava["reference_agreement"] == 1.0"""),
    ("md", """## One sample through the network

Black ticks are +1 spikes, red ticks are −1 spikes (a signed neuron taking back a spike it fired
too early). The last panel is the output layer's integer current summed over the T steps."""),
    ("code", """from fastsnn_lava.data import load_dataset
from fastsnn_lava.plots import spike_raster

x = load_dataset("digits").x_test[0]
fig = spike_raster(net, x, "raster.png")"""),
]

CONVERSION = [
    ("md", """# 02 · Conversion error: signed vs unsigned IF, fine-tuning, per-layer diagnosis

A deeper layer receives spikes whose timing varies, so its spike count can differ from the
quantized ANN's level (the *sequential error*). This notebook measures it per layer for the
unsigned IF neuron, Fast-SNN's signed IF neuron, and the signed neuron after layer-wise
fine-tuning. About two minutes on 2 CPU cores."""),
    ("code", """from fastsnn_lava import pipeline

qann, _, meta = pipeline.train("digits", "cnn", bits=2, out="cnn.pt", epochs=20, qat_epochs=20, progress=False)
print(f"2-bit QANN {meta['qann_test_accuracy']:.2%}")"""),
    ("md", """## Layer-wise fine-tuning (`fastsnn-finetune cnn.pt -o cnn_ft.pt`)

Hidden layers 2…L−1, one at a time: forward = the SNN layer's spike count, backward = the QANN
layer's gradient, MSE to the QANN activation, thresholds frozen. An epoch is kept only if the
layer's mismatch to the QANN on held-out training data falls."""),
    ("code", """net_ft, record = pipeline.finetune("cnn.pt", "cnn_ft.pt", epochs=1, progress=False)
for r in record["layers"]:
    print(f"layer {r['layer']}: held-out mismatch {r['mismatch_before']:.4f} → {r['mismatch_after']:.4f} θ "
          f"({r['epochs_kept']}/{r['epochs_run']} epochs kept)")
print(f"SNN test accuracy {record['snn_test_accuracy_before']:.2%} → {record['snn_test_accuracy']:.2%}")"""),
    ("md", "## Diagnosis (`fastsnn-diagnose cnn_ft.pt --json diag.json --plot diag.png`)"),
    ("code", """rec = pipeline.diagnose("cnn_ft.pt", sweep_samples=360, json_path="diag.json", plot_path="diag.png")
print(f"QANN {rec['qann_accuracy']:.2%}")
for name, v in rec["variants"].items():
    errs = "  ".join(f"{r['mean_abs_error_theta']:.4f}" for r in v["layers"])
    print(f"{name:17} accuracy {v['accuracy']:.2%}   mean |N − K| per layer (θ): {errs}")
signed, unsigned = rec["variants"]["signed"]["layers"], rec["variants"]["unsigned"]["layers"]
assert all(s["mean_abs_error_theta"] <= u["mean_abs_error_theta"] for s, u in zip(signed, unsigned))"""),
    ("code", """from IPython.display import Image
Image("diag.png")"""),
    ("md", """The first layer has no error (its input current is the same at every step). Left: the
accumulated per-layer error; right: accuracy against the number of time steps T' — Fast-SNN
reaches the QANN's accuracy at T = 2^b − 1 (dotted line)."""),
]


DEPLOYMENT = [
    ("md", """# 03 · Loihi deployment: core mapping, energy and latency estimates, the CUBA path

Will the network fit on the chip, how much energy per inference, how fast? `fastsnn-report`
answers before deployment. **Every energy and time below is an estimate** (activity measured by
simulation × per-operation constants from `hardware_configs/`, each with its source; Loihi 2 has no
published per-operation costs, so Loihi 1's stand in). About a minute on 2 CPU cores."""),
    ("code", """from fastsnn_lava import pipeline

pipeline.train("digits", "cnn", bits=2, out="cnn.pt", epochs=15, qat_epochs=15, progress=False)
net = pipeline.export("cnn.pt", "net.h5", hw="loihi2")   # checks weights, thresholds, state and core limits"""),
    ("md", "## The report (`fastsnn-report net.h5 --dataset digits --hw loihi2 --json report.json --plot report.png`)"),
    ("code", """rec = pipeline.report("net.h5", "digits", hw="loihi2", json_path="report.json", plot_path="report.png")
print(f"{'layer':>5} {'kind':>5} {'neurons':>8} {'synapses':>9} {'cores':>6} {'synops/inference':>17} {'+spikes':>8} {'-spikes':>8}")
for l in rec["layers"]:
    a = l["activity"]
    print(f"{l['layer']:>5} {l['kind']:>5} {l['neurons']:>8} {l['synapses']:>9} {l['cores']['loihi2']:>6} "
          f"{a['synops']:>17.0f} {a['spikes_pos']:>8.1f} {a['spikes_neg']:>8.1f}")
for name in ("loihi2", "loihi1"):
    e = rec["estimates"][name]
    print(f"{name}: {e['cores']} cores, dynamic {e['dynamic_energy_uj']:.3f} µJ + static {e['static_energy_uj']:.3f} µJ "
          f"per inference, latency {e['latency_us']:.2f} µs ({e['latency_steps']} steps)  [{e['label']}]")
q = rec["estimates"]["qann_baseline"]
print(f"QANN on a 45 nm accelerator: {q['energy_uj']:.4f} µJ; ratio QANN / Loihi 2 dynamic = "
      f"{rec['ratio_qann_over_loihi2']['dynamic']:.3f}")"""),
    ("code", """from IPython.display import Image
Image("report.png")"""),
    ("md", """## Hardware without the custom neuron: `--neuron cuba`

Loihi 2 runs Lava's standard CUBA LIF natively; the signed IF neuron needs a NeuroCore microcode
model that only Intel's lava-loihi can supply. `--neuron cuba` writes a vanilla netx network that
unmodified `lava.lib.dl.netx` loads. The mapping is lossy (reset to zero, no −1 spikes), and the
project's LIF reference equals Lava exactly on it."""),
    ("code", """pipeline.export("cnn.pt", "cuba.h5", neuron="cuba")
cuba = pipeline.run("cuba.h5", "digits", backend="lava-sim", samples=16, model_path="cnn.pt", progress=False)
print(f"CUBA on Lava: {cuba['snn_accuracy']:.2%} on 16 samples, equal to the LIF reference on "
      f"{cuba['reference_agreement']:.0%}")
assert cuba["reference_agreement"] == 1.0"""),
    ("md", "## A layer too large for a core is refused at export, naming the layer and the limit"),
    ("code", """import dataclasses
import numpy as np
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.hardware import check_network, load_target
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.neuron import SignedIF, Accumulator

wide = Network((5000,), [Layer("dense", np.ones((16, 5000), int) * 2, np.zeros(16, int), SignedIF(20000), (5000,), (16,)),
                         Layer("dense", np.ones((10, 16), int), np.zeros(10, int), Accumulator(), (16,), (10,))],
               bits=2, input_max=1)
try:
    check_network(wide, load_target("loihi2"))
except FastSNNError as e:
    print("refused:", e)"""),
]


YOUR_MODEL = [
    ("md", """# 04 · Your own model: train it, or convert it with its own trained weights

A model you wrote in PyTorch becomes a Fast-SNN network in two ways:

* **(a)** `fastsnn-train --model my_model.py:build`: this project's quantization-aware training
  (QAT) of your architecture, then the usual export;
* **(b)** `fastsnn-export --model my_model.py:build --weights my_weights.pt`: your model, trained
  your way, converted directly; the export prints how closely the network it writes follows
  your model.

The model file is ordinary PyTorch: FUNCTION returns an `nn.Module` that takes inputs scaled to
[0, 1] and returns the logits. About a minute on 2 CPU cores."""),
    ("code", """%%writefile my_model.py
import torch.nn as nn


class MyNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def build(width: int = 8):
    return MyNet(width)


def wide(hidden: int = 5000):  # a multilayer perceptron whose classifier neurons each read `hidden` inputs
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))"""),
    ("md", """## (a) This project's training of your architecture

`fastsnn-train --model my_model.py:build --dataset digits --bits 2 -o mine.pt` traces the model
with torch.fx (BatchNorm folds into the convolutions, each ReLU becomes a layer of spiking neurons,
the global average pooling folds into the classifier), trains it and writes an ordinary checkpoint:
exporting and running it needs no user code."""),
    ("code", """from fastsnn_lava import pipeline

qann, float_net, meta = pipeline.train("digits", model="my_model.py:build", bits=2, out="mine.pt",
                                       epochs=5, qat_epochs=2, lr=1e-2, progress=False)
print(f"float {meta['float_test_accuracy']:.2%}   2-bit QANN {meta['qann_test_accuracy']:.2%}")
print("layers:", [layer["kind"] for layer in qann.spec])
net = pipeline.export("mine.pt", "mine.h5")          # fastsnn-export mine.pt -o mine.h5
lava = pipeline.run("mine.h5", "digits", backend="lava-sim", samples=16, progress=False)
print(f"Lava {lava['snn_accuracy']:.2%} on 16 samples, identical to the reference on {lava['reference_agreement']:.0%}")
assert lava["reference_agreement"] == 1.0"""),
    ("md", """## (b) Your own training, your own weights

Here the user trains the float model with a plain PyTorch loop and saves its `state_dict`, as
anyone would. `fastsnn-export --model ... --weights ... --dataset digits` loads it (with
`weights_only=True`: no code runs), calibrates each layer's clip on a seeded, class-balanced set
of training images, puts weights and activations on the b-bit integer grid and writes the file.
That re-quantization changes the outputs a little, so the export prints the top-1 agreement and the
largest logit difference between your model and the network it wrote (here b = 4)."""),
    ("code", """import torch
from fastsnn_lava.data import load_dataset
from fastsnn_lava.user_model import load_model

torch.manual_seed(0)
model, ds = load_model("my_model.py:build"), load_dataset("digits")
x, y = torch.as_tensor(ds.x_train).float() / ds.input_max, torch.as_tensor(ds.y_train).long()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(5):
    for idx in torch.randperm(len(x)).split(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
torch.save(model.state_dict(), "my_weights.pt")

# fastsnn-export --model my_model.py:build --weights my_weights.pt --dataset digits --bits 4 -o own.h5
own = pipeline.export(None, "own.h5", model="my_model.py:build", weights="my_weights.pt", dataset="digits",
                      bits=4, log=print)
lava = pipeline.run("own.h5", "digits", backend="lava-sim", samples=16, progress=False)
print(f"Lava {lava['snn_accuracy']:.2%} on 16 samples, identical to the reference on {lava['reference_agreement']:.0%}")
assert lava["reference_agreement"] == 1.0"""),
    ("md", """## Simulation only: `--hw none` still says what would not fit

With `--hw loihi2` (the default) a network beyond a target's limits is refused: `wide` (its
classifier's neurons read 5000 inputs each, a Loihi core receives at most 4096). `--hw none`
writes it anyway for simulation, and lists for every target in `hardware_configs/` each layer
that breaks a limit and by how much, or "fits". (Untrained weights: only the sizes matter here.)"""),
    ("code", """from fastsnn_lava.errors import FastSNNError

try:  # fastsnn-export --model my_model.py:wide --dataset digits -o wide.h5
    pipeline.export(None, "wide.h5", model="my_model.py:wide", dataset="digits", samples=64)
except FastSNNError as e:
    print("refused:", e)
# fastsnn-export --model my_model.py:wide --dataset digits --hw none -o wide.h5
wide = pipeline.export(None, "wide.h5", model="my_model.py:wide", dataset="digits", samples=64, hw="none", log=print)"""),
    ("md", "## One test image through the network written in (b)"),
    ("code", """from fastsnn_lava.plots import spike_raster

fig = spike_raster(own, ds.x_test[0], "raster.png")"""),
]


def build(name: str, cells: list) -> None:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes nothing unless the cells change
        cell["id"] = f"{name[:2]}-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    build("01_quickstart.ipynb", QUICKSTART)
    build("02_conversion_error.ipynb", CONVERSION)
    build("03_loihi_deployment.ipynb", DEPLOYMENT)
    build("04_your_own_model.ipynb", YOUR_MODEL)
    print("wrote", sorted(p.name for p in HERE.glob("*.ipynb")))
