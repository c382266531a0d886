"""lava-dl's own netx test networks through fastsnn-report, and its ground truth from the LIF reference.

lava-dl 0.6.0 ships six netx files under ``tests/lava/lib/dl/netx`` (the first test keeps the list
complete). Each is reported (exit 0) or refused in one line naming the feature the LIF reference
does not simulate (exit 2): SDNN (sigma-delta) neurons, and ntidigits' ``average`` read-out layer,
which netx cannot build either.

The ground truth in ``gts/`` is reproduced exactly. Lava runs the layers as a pipeline (each
synapse adds one step); the reference runs the window layer by layer (``lif.py``), so a lava-dl
time index t maps to a reference step:

* pilotnet_lif (a Lava pipeline; layer l, 0 = the input neurons, is reset at index l and every 17
  steps after): for t ≥ l, ``GT[..., t]`` of layer l = reference step (t − l) mod 17, for the
  spikes, ``u`` and ``v``, where the files record a spiking neuron's ``v`` as 128 (Lava's model
  leaves 0). Before index l the layer has only integrated its bias, no sample. input-s.npy (the
  spikes lava-dl's test_pilotnet_lif_spike_input injects) repeats every 16 steps instead: index t =
  step t mod 16. lava-dl's own check (test_hdf5_nx.test_pilotnet_lif, Loihi only) is one of these
  values: fc-2's ``u`` at index 14 = step 6.
  fc-3-{s,u,v}.npy (float64, 25 steps) are not compared: they contradict fc-2.npy (fc-3's ``u`` is 0
  at index 8 although fc-2's neuron 5, weight −24, spiked at index 7) and no lava-dl test reads them.
* tinynet (slayer): ``GT[..., t]`` = reference step t − 1 for t = 1..15, ``GT[..., 0]`` = 0, for the
  input spikes, layer 1's spikes and current (× 64 = ``u``) and the output spikes.
* ntidigits (per-neuron synaptic delays, without the ``average`` layer as lava-dl's test):
  ``output[:, t + 4]`` = reference step t for all 3000 steps, the first 4 columns empty. lava-dl's
  own test compares only ``output[:, -1]`` with ``gt[:, 1]``, both all zero.
* the dense block of test_blocks.test_dense: ``out[:, t + 1]`` and ``current[:, t + 1] × 64`` = step t.
"""
import json
import shutil

import h5py
import numpy as np
import pytest

from fastsnn_lava.cli import report
from fastsnn_lava.ir import Layer, Network
from fastsnn_lava.lif import lif_forward
from fastsnn_lava.neuron import CubaLIF
from fastsnn_lava.netx.cuba import read_lif_network


def _image(root, rel, name):
    return np.load(root / "gts" / rel / name).transpose(2, 1, 0)[None]  # lava-dl's (W, H, C) → (1, C, H, W)


NETS = {  # shipped file → (its input for --input, None if it reports, else words of the one-line refusal)
    "mnist.net": (lambda root: np.random.default_rng(0).integers(0, 256, (2, 784)), None),
    "tiny.net": (lambda root: _image(root, "tinynet", "input_bias.npy"), None),
    "gts/pilotnet_lif/network.net": (lambda root: _image(root, "pilotnet_lif", "image.npy"), None),
    "gts/ntidigits/ntidigits.net": (lambda root: np.zeros((1, 16, 1, 1, 64), int), "/layer/5: layer type 'average'"),
    "gts/pilotnet_sdnn/network.net": (lambda root: np.zeros((1, 3, 33, 100), int), "SDNN neurons (sigma-delta"),
    "gts/pilotnet_sdnn/square_network.net": (lambda root: np.zeros((1, 3, 33, 33), int), "SDNN neurons (sigma-delta"),
}


def _whc(trace) -> np.ndarray:
    """A reference trace (T, 1, *shape) in lava-dl's layout: (W, H, C, T) for (C, H, W), (N, T) for (N,)."""
    a = trace.numpy()[:, 0]
    return a.transpose(*range(a.ndim - 1, 0, -1), 0)


def test_every_shipped_network_is_covered(lavadl_netx_dir):
    shipped = sorted(str(p.relative_to(lavadl_netx_dir)) for p in lavadl_netx_dir.rglob("*.net"))
    assert shipped == sorted(NETS)


@pytest.mark.parametrize("name", sorted(NETS))
def test_shipped_network_reports_or_is_refused_in_one_line(lavadl_netx_dir, tmp_path, capsys, name):
    path = lavadl_netx_dir / name
    make_input, refusal = NETS[name]
    x = make_input(lavadl_netx_dir)
    np.save(tmp_path / "x.npy", x)
    code = report.main([str(path), "--input", str(tmp_path / "x.npy"), "--steps", "16",
                        "--json", str(tmp_path / "r.json")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if refusal is None:
        assert code == 0 and not err, (code, err)
        rec = json.loads((tmp_path / "r.json").read_text())
        assert rec["samples"] == len(x) and rec["timesteps"] == 16
    else:
        assert code == 2 and len(err) == 1, (code, err)
        assert refusal in err[0] and "internal error" not in err[0] and "Traceback" not in err[0], err[0]
        assert not (tmp_path / "r.json").exists()


PILOT_LAYERS = ["input"] + [f"conv-{i}" for i in range(5)] + [f"fc-{i}" for i in range(3)]
PILOT_WINDOW = 17  # the ground truth's reset period
SPIKED_V = 128     # the files' v of a neuron that spiked at that step


def _assert_windows(gt, ours, l: int, window: int, what: str) -> None:
    """``gt[..., t]`` = ``ours[..., (t − l) mod window]`` for every t ≥ l (``ours`` has ≥ ``window`` steps)."""
    steps = (np.arange(l, gt.shape[-1]) - l) % window
    ours = ours.reshape(gt.shape[:-1] + (ours.shape[-1],))[..., steps]
    assert gt[..., l:].any() and np.array_equal(gt[..., l:], ours), what


def test_pilotnet_lif_ground_truth(lavadl_netx_dir):
    gts = lavadl_netx_dir / "gts" / "pilotnet_lif"
    net = read_lif_network(gts / "network.net", timesteps=PILOT_WINDOW)
    tr = lif_forward(net, _image(lavadl_netx_dir, "pilotnet_lif", "image.npy"), keep_spikes=True, keep_state=True)
    for l, name in enumerate(PILOT_LAYERS):
        spikes = _whc(tr.spikes[l])
        files = {"input.npy": spikes} if l == 0 else {
            f"{name}.npy": spikes, f"{name}-u.npy": _whc(tr.currents[l]),
            f"{name}-v.npy": np.where(spikes > 0, SPIKED_V, _whc(tr.voltages[l]))}
        for fname, ours in files.items():
            _assert_windows(np.load(gts / fname), ours, l, PILOT_WINDOW, fname)
    # input-s.npy, the spikes lava-dl's test_pilotnet_lif_spike_input injects, repeat every 16 steps
    _assert_windows(np.load(gts / "input-s.npy"), _whc(tr.spikes[0]), 0, 16, "input-s.npy")
    # lava-dl's test_hdf5_nx.test_pilotnet_lif: fc-2 (layer 8) u after 15 steps, reset every 16
    assert np.array_equal(np.load(gts / "fc-2-u.npy")[..., 14], _whc(tr.currents[8]).reshape(10, -1)[:, 14 - 8])


def test_tinynet_ground_truth(lavadl_netx_dir):
    gts = lavadl_netx_dir / "gts" / "tinynet"
    net = read_lif_network(lavadl_netx_dir / "tiny.net", timesteps=16)
    tr = lif_forward(net, _image(lavadl_netx_dir, "tinynet", "input_bias.npy"), keep_spikes=True, keep_state=True)
    for fname, ours, scale in (("input.npy", tr.spikes[0], 1), ("layer1.npy", tr.spikes[1], 1),
                               ("current.npy", tr.currents[1], 64), ("output.npy", tr.spikes[2], 1)):
        gt = np.load(gts / fname)[0].transpose(2, 1, 0, 3) * scale  # slayer's (C, H, W, T) → (W, H, C, T)
        assert gt.any() and not gt[..., 0].any(), fname
        assert np.array_equal(gt[..., 1:], _whc(ours)[..., :15]), fname


def test_ntidigits_delays_ground_truth(lavadl_netx_dir, tmp_path):
    gts = lavadl_netx_dir / "gts" / "ntidigits"
    path = tmp_path / "ntidigits.net"
    shutil.copy(gts / "ntidigits.net", path)
    with h5py.File(path, "r+") as f:
        del f["layer/5"]  # the 'average' read-out, which netx cannot build (lava-dl's test: num_layers=5)
    x, gt = np.load(gts / "input.npy"), np.load(gts / "output.npy")  # (64, T), (242, T)
    T = x.shape[1]
    net = read_lif_network(path, timesteps=T)
    assert [layer.delay is not None for layer in net.layers] == [True, True, False]
    s = _whc(lif_forward(net, x.T[None, :, None, None, :], keep_spikes=True).spikes[-1]).reshape(-1, T)
    assert gt.sum() > 1000 and not gt[:, :4].any() and not s[:, T - 4:].any()
    assert np.array_equal(gt[:, 4:], s[:, :T - 4])
    short = read_lif_network(path, timesteps=600)  # negative control: without the delays the spikes differ
    for layer in short.layers:
        layer.delay = None
    s0 = _whc(lif_forward(short, x.T[None, :600, None, None, :], keep_spikes=True).spikes[-1]).reshape(-1, 600)
    assert not np.array_equal(gt[:, 4:600], s0[:, :596])


def test_dense_block_ground_truth(lavadl_netx_dir):
    """test_blocks.test_dense: a Dense block into LIF(vth 6, du 4095, dv 415) driven by in.npy."""
    gts = lavadl_netx_dir / "gts" / "dense"
    w, x = np.load(gts / "weight.npy"), np.load(gts / "in.npy")  # (256, 200), (200, T)
    T, (n_out, n_in) = x.shape[1], w.shape
    layer = Layer("dense", w, np.zeros(n_out, int), CubaLIF(vth=6, i_decay=4096, v_decay=415), in_shape=(n_in,),
                  out_shape=(n_out,))
    tr = lif_forward(Network((n_in,), [layer], timesteps=T, reset_interval=T), x.T[None], keep_spikes=True, keep_state=True)
    out, cur = np.load(gts / "out.npy"), np.load(gts / "current.npy") * 64
    assert out.sum() > 100 and not out[:, 0].any() and not cur[:, 0].any()
    assert np.array_equal(out[:, 1:], _whc(tr.spikes[0])[:, :-1])
    assert np.array_equal(cur[:, 1:], _whc(tr.currents[0])[:, :-1])


def _set(f, key, value):
    del f[key]
    f[key] = value


EDITS = {  # an edit of a shipped file → words of the one-line refusal
    "RF neurons": ("mnist.net", lambda f: _set(f, "layer/1/neuron/type", b"RF"), "resonate-and-fire"),
    "recurrent dense": ("mnist.net", lambda f: _set(f, "layer/2/type", np.array([b"dense_rec"])), "'dense_rec'"),
    "complex weights": ("mnist.net", lambda f: (f["layer/2"].move("weight", "w"), f["layer/2"].create_group("weight"),
                                                f["layer/2"].move("w", "weight/real")), "complex-valued"),
    "conv delays": ("tiny.net", lambda f: f["layer/1"].create_dataset("delay", data=np.ones(24)), "delays on a conv"),
    "IF neurons": ("mnist.net", lambda f: _set(f, "layer/1/neuron/type", b"SIGNED_IF"), "re-export"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_shipped_network_is_refused_in_one_line(lavadl_netx_dir, tmp_path, capsys, edit):
    name, change, words = EDITS[edit]
    path = tmp_path / name
    shutil.copy(lavadl_netx_dir / name, path)
    with h5py.File(path, "r+") as f:
        change(f)
    np.save(tmp_path / "x.npy", NETS[name][0](lavadl_netx_dir))
    code = report.main([str(path), "--input", str(tmp_path / "x.npy"), "--steps", "4"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and words in err[0], (code, err)


def _with_delay(path, layer, d):
    with h5py.File(path, "r+") as f:
        if f"layer/{layer}/delay" in f:
            del f[f"layer/{layer}/delay"]
        f[f"layer/{layer}/delay"] = d
    return read_lif_network(path, timesteps=12)


def test_delays_of_every_netx_shape(lavadl_netx_dir, tmp_path):
    """netx's delay forms (hdf5.py create_dense) on mnist's 10 × 512 read-out: one value, one per neuron,
    one per input, a full matrix; and a_i(t) = Σ_j W_ij · s_j(t − D_ij) for a matrix of all-different rows."""
    path = tmp_path / "mnist.net"
    shutil.copy(lavadl_netx_dir / "mnist.net", path)
    x = np.random.default_rng(1).integers(0, 256, (3, 784))
    per_input = np.arange(512) % 5
    outs = {}
    for form, d in {"scalar": np.array(3), "neuron": np.arange(10) % 7, "input": per_input,
                    "matrix": np.tile(per_input, (10, 1)), "over 62": np.full(10, 80)}.items():
        net = _with_delay(path, 3, d)
        assert net.layers[3].delay.shape == (10, 512) and net.layers[3].delay.max() <= 62
        outs[form] = lif_forward(net, x).out.numpy()
    assert np.array_equal(outs["input"], outs["matrix"]) and not np.array_equal(outs["scalar"], outs["neuron"])
    assert not outs["over 62"].any()  # clamped to 62 steps: nothing arrives within 12
    i, j = np.indices((512, 512))
    net = _with_delay(path, 2, (i + 2 * j) % 5)  # neither one per neuron nor one per input
    tr = lif_forward(net, x, keep_spikes=True, keep_state=True)
    s, w, d = tr.spikes[1].numpy().reshape(12, 3, 512), net.layers[2].weight, net.layers[2].delay
    a = np.stack([sum(s[t - k] @ np.where(d == k, w, 0).T for k in range(5) if t >= k) for t in range(12)])
    assert a.any() and np.array_equal(tr.currents[2].numpy().reshape(12, 3, 512), a << 6)
