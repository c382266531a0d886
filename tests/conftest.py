"""Shared fixtures: small trained digits models, cached for the session.

They train on one CPU thread, so on one machine they are the same models whatever
OMP_NUM_THREADS says (.ci/run runs the suite at 1 and at 2). Tests still assert only
what holds on any machine: another CPU rounds the float training differently.

With FASTSNN_STRICT=1 (set by .ci/run) a test that would skip for want of Lava
or data fails instead, so CI cannot pass by skipping.
"""
import os
import sys

import pytest

STRICT = os.environ.get("FASTSNN_STRICT") == "1"


def pytest_configure(config):
    """Tensors freed by one test are reused by the next instead of faulted in again (fastsnn_lava/heap.py)."""
    from fastsnn_lava.heap import keep_freed_memory
    keep_freed_memory()


def need(condition: bool, reason: str) -> None:
    """Skip (or, in strict mode, fail) unless ``condition`` holds."""
    if not condition:
        if STRICT:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def lava_available() -> bool:
    if sys.version_info[:2] != (3, 10):
        return False
    from fastsnn_lava.errors import FastSNNError
    from fastsnn_lava.lava import require_lava
    try:
        require_lava()
        return True
    except FastSNNError:
        return False


@pytest.fixture
def require_lava():
    need(lava_available(), "Lava (lava-nc 0.10.0, lava-dl 0.6.0 on Python 3.10) is not installed")


_MODELS = {}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(arch, bits) → (QuantNet, float net, meta, checkpoint path); trained once per session."""
    from fastsnn_lava.pipeline import train

    def get(arch: str, bits: int):
        key = (arch, bits)
        if key not in _MODELS:
            path = tmp_path_factory.mktemp(f"{arch}{bits}") / "model.pt"
            q, f, meta = train("digits", arch, bits, str(path), epochs=20, qat_epochs=20, seed=0, progress=False,
                               threads=1)
            _MODELS[key] = (q, f, meta, path)
        return _MODELS[key]
    return get


@pytest.fixture(scope="session")
def resnet8(tmp_path_factory):
    """Checkpoint path of a digits ResNet-8 at b = 2 (three shortcuts), trained once per session."""
    from fastsnn_lava.pipeline import train
    path = tmp_path_factory.mktemp("r8") / "r8.pt"
    train("digits", "resnet8", 2, str(path), epochs=2, qat_epochs=2, progress=False, threads=1)
    return path


@pytest.fixture
def require_fashion():
    from fastsnn_lava.data import fashion_dir
    need(fashion_dir() is not None, "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def load_repository_file(relative: str):
    """A fresh module of the repository file ``relative`` (a script, a benchmark model, a test helper), loaded by
    path: in importlib mode the tests cannot import them by name. Fresh, so a test may set its globals."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(f"fastsnn_{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repository_file():
    """:func:`load_repository_file`, for tests (``repository_file("scripts/results_table.py")``)."""
    return load_repository_file


@pytest.fixture(scope="session")
def datagen():
    """tests/datagen.py (generated PNG folders and IDX files)."""
    return load_repository_file("tests/datagen.py")


def lavadl_netx_root():
    """lava-dl's netx test folder (tests/lava/lib/dl/netx), installed with lava-dl's wheel."""
    import importlib.util
    from pathlib import Path
    lavadl = Path(importlib.util.find_spec("lava.lib.dl.netx").origin).parents[4]
    return lavadl / "tests" / "lava" / "lib" / "dl" / "netx"


@pytest.fixture
def lavadl_netx_dir(require_lava):
    """lava-dl's netx test networks (*.net) and ground-truth arrays (gts/*.npy), every one real data."""
    root = lavadl_netx_root()
    need(root.is_dir() and any(root.rglob("*.net")), f"lava-dl's netx test data {root} is not installed")
    for path in [p for p in root.rglob("*") if p.suffix in (".net", ".npy")]:
        with open(path, "rb") as f:
            head = f.read(8)
        need(head.startswith((b"\x89HDF", b"\x93NUMPY")), f"{path} is not data (a Git LFS pointer?)")
    return root


@pytest.fixture
def lavadl_mnist_net(require_lava):
    """lava-dl's own slayer-exported MNIST network (installed with lava-dl's test data)."""
    import importlib.util
    from pathlib import Path
    root = Path(importlib.util.find_spec("lava.lib.dl.netx").origin).parents[4]
    path = root / "tests" / "lava" / "lib" / "dl" / "netx" / "mnist.net"
    need(path.exists(), f"lava-dl's test network {path} is not installed")
    return path


@pytest.fixture
def cifar10_archive():
    """The CIFAR-10 JPEG archive that CI finds in shared/data beside the checkout (never needed by users)."""
    from pathlib import Path
    given = os.environ.get("FASTSNN_CIFAR10")
    path = Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
    need(path.is_file(), f"the CIFAR-10 archive {path} is not there (shared/data beside the checkout, or set "
                         "FASTSNN_CIFAR10)")
    return path
