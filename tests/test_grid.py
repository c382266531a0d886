"""The integer grid: its limits come from the hardware target's YAML, and checkpoints store its integers."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from fastsnn_lava import checkpoint, grid
from fastsnn_lava.convert import from_checkpoint, to_network
from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.models import QuantNet, build_float, resnet_spec, resolve_arch

LOIHI2_YAML = Path(__file__).resolve().parent.parent / "hardware_configs" / "loihi2.yaml"


def _target_copy(tmp_path, **bits) -> Path:
    cfg = yaml.safe_load(LOIHI2_YAML.read_text())
    for key, value in bits.items():
        cfg["limits"][key]["value"] = value
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_loihi2_limits_are_read_from_its_yaml():
    cfg = yaml.safe_load(LOIHI2_YAML.read_text())["limits"]
    w, th, b = (cfg[k]["value"] for k in ("weight_bits", "threshold_bits", "bias_bits"))
    assert (w, th, b) == (8, 17, 13)
    assert grid.target_limits("loihi2") == grid.LOIHI2 == grid.Limits(127, 2 ** 17 - 2, 2 ** 12 - 1)
    assert (grid.WEIGHT_QMAX, grid.THETA_MAX, grid.BIAS_MAX) == (127, 131070, 4095)
    assert grid.LOIHI2.bias_min == -4096


def test_a_copied_yaml_with_other_limits_changes_them(tmp_path):
    lim = grid.target_limits(str(_target_copy(tmp_path, weight_bits=5, threshold_bits=9, bias_bits=7)))
    assert lim == grid.Limits(weight_qmax=15, theta_max=510, bias_max=63)
    # the grid follows: a layer whose finest grid needs θ > 510 is capped there, and codes clip at ±15 / [-64, 63]
    theta, delta, unit = grid.hidden_grid(1.0, 1.0 / 255, 1.0, limits=lim)
    assert theta == 510 and grid.hidden_grid(1.0, 1.0 / 255, 1.0)[0] == 32384  # loihi2: 2·floor(127·255/2)
    assert unit == 1.0 / 510 and delta == unit * 255
    c = grid.bias_codes(torch.tensor([1e3, -1e3, 0.3]), 0.1, lim)
    assert c.tolist() == [63.0, -64.0, 3.0]


def test_a_target_without_the_grid_limits_is_one_line(tmp_path):
    cfg = yaml.safe_load(LOIHI2_YAML.read_text())
    del cfg["limits"]["bias_bits"]
    path = tmp_path / "nobias.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(FastSNNError, match="bias_bits"):
        grid.target_limits(str(path))


@pytest.mark.parametrize("alpha,u_in,w_max,skips", [
    (1.7, 1 / 255, 0.3, ()), (0.02, 1 / 15, 2.5, ()), (3.0, 0.5, 1e-6, ()), (1.0, 0.8, 0.4, ((0.9, 1.0),)),
    (2.0, 1.1, 0.2, ((1.5, 0.05), (0.7, 1.0)))])
def test_hidden_grid_is_the_docstring_formula(alpha, u_in, w_max, skips):
    theta, delta, unit = grid.hidden_grid(alpha, u_in, w_max, skips)
    bound = min([alpha * 127 / (u_in * w_max)] + [alpha * 127 / (a * m) for a, m in skips])
    assert theta == min(2 ** 17 - 2, 2 * max(1, math.floor(bound / 2))) and theta % 2 == 0
    assert (delta, unit) == grid.steps(alpha, theta, u_in) == (alpha / theta / u_in, alpha / theta)
    assert theta == 2 or theta <= bound  # the weights' codes fit |q| ≤ q_max
    with pytest.raises(FastSNNError, match="non-positive"):
        grid.hidden_grid(0.0, u_in, w_max, skips)


def _trained(spec, shape, bits=2, seed=0):
    torch.manual_seed(seed)
    float_net = build_float(spec, shape, 4)
    qann = QuantNet(spec, shape, 4, bits, 255)
    qann.init_from_float(float_net, torch.randint(0, 256, (16, *shape)).float())
    return qann, float_net


NETS = {"mlp": (resolve_arch("mlp"), (1, 6, 6)), "cnn": (resolve_arch("cnn"), (1, 8, 8)),
        "resnet": (resnet_spec((4, 8), 1), (3, 8, 8))}


@pytest.mark.parametrize("arch", sorted(NETS))
def test_a_saved_checkpoint_returns_its_stored_network(tmp_path, arch):
    qann, float_net = _trained(*NETS[arch])
    path = tmp_path / "m.pt"
    checkpoint.save(path, qann, float_net, {"dataset": "x"})
    fresh = to_network(qann)
    loaded = from_checkpoint(str(path))
    assert loaded.equals(fresh) and loaded.layers[0].threshold == fresh.layers[0].threshold
    assert from_checkpoint(str(path), "unsigned").equals(to_network(qann, "unsigned_if"))
    blob = torch.load(path, weights_only=True)
    assert [t is None for t in blob["net"]["threshold"]] == [False] * (len(qann.layers) - 1) + [True]
    assert all(w.dtype == torch.int8 for w in blob["net"]["weight"])  # |q| ≤ 127: one byte per code
    # the stored integers are returned, not re-derived: moving every clip α in the QANN changes
    # what a fresh conversion gives, but not the stored network
    for name in blob["qann"]:
        if name.endswith("alpha"):
            blob["qann"][name] *= 3.0
    torch.save(blob, path)
    q2 = checkpoint.load(path)[0]
    assert not to_network(q2).equals(fresh)
    assert from_checkpoint(str(path)).equals(fresh)


@pytest.mark.parametrize("arch", sorted(NETS))
def test_an_old_checkpoint_without_the_stored_network_still_loads(tmp_path, arch):
    qann, float_net = _trained(*NETS[arch], bits=3)
    path = tmp_path / "old.pt"
    checkpoint.save(path, qann, float_net, {"dataset": "x"})
    blob = torch.load(path, weights_only=True)
    del blob["net"]
    torch.save(blob, path)
    assert "_codes" not in checkpoint.load(path)[2]
    assert from_checkpoint(str(path)).equals(to_network(qann))


def _edit_net(part, k, value):
    def edit(net):
        net[part][k] = value(net[part][k]) if callable(value) else value
    return edit


HOSTILE = {
    "float weights": (_edit_net("weight", 0, lambda t: t.float()), "integer codes"),
    "bool biases": (_edit_net("bias", 1, lambda t: t.bool()), "integer codes"),
    "wrong weight shape": (_edit_net("weight", 0, lambda t: t[:, :-1]), "shape"),
    "odd threshold": (_edit_net("threshold", 0, lambda t: t + 1), "even integer"),
    "a string threshold": (_edit_net("threshold", 0, "64"), "even integer"),
    "threshold on the classifier": (_edit_net("threshold", -1, 8), "None"),
    "one layer missing": (lambda net: [net[k].pop() for k in ("weight", "bias", "threshold", "skips")], "layers"),
    "not a mapping": (lambda net: net.clear(), "damaged stored network"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_damaged_stored_network_is_one_line(tmp_path, case):
    edit, word = HOSTILE[case]
    qann, float_net = _trained(*NETS["mlp"])
    path = tmp_path / "m.pt"
    checkpoint.save(path, qann, float_net, {"dataset": "x"})
    blob = torch.load(path, weights_only=True)
    edit(blob["net"])
    torch.save(blob, path)
    with pytest.raises(FastSNNError, match=word) as e:
        checkpoint.load(path)
    assert "\n" not in str(e.value)


def test_steps_of_a_known_threshold_are_the_grid():
    qann, _ = _trained(*NETS["resnet"])
    units = qann.units_in()
    for k, layer in enumerate(qann.layers[:-1]):
        theta, delta, unit = layer.grid(units[k], qann.skip_alphas(k))
        assert layer.steps(units[k], theta) == (delta, unit)
