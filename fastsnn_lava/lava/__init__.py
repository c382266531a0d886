"""Everything that imports Lava lives in this subpackage.

The rest of fastsnn-lava (training, conversion, export, the reference
simulation) runs without Lava; importing this package needs lava-nc 0.10.0
and lava-dl 0.6.0, which import only on Python 3.10 with numpy < 2.
"""
from ..errors import FastSNNError


def _import_lava_runtime() -> None:
    """Import Lava's multiprocessing layer, which calls ``set_start_method('fork')``.

    That call raises "context has already been set" when anything (torch,
    tqdm, joblib) fixed the start method before; we let it force the method.
    """
    import multiprocessing as mp
    original = mp.set_start_method
    mp.set_start_method = lambda method, force=False: original(method, force=True)
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        mp.set_start_method = original


try:  # every module of this package imports Lava; let its runtime force the start method first
    _import_lava_runtime()
except Exception:  # Lava missing or unusable: require_lava() reports it in one line
    pass


def require_lava() -> None:
    """Raise a one-line FastSNNError when Lava cannot be imported."""
    try:
        _import_lava_runtime()
        import lava.lib.dl.netx  # noqa: F401
        import lava.magma.core.run_configs  # noqa: F401
    except Exception as e:  # ImportError, or Lava's ValueError on Python >= 3.11
        raise FastSNNError(
            f"Lava is not usable here ({type(e).__name__}: {str(e)[:80]}): install the 'lava' extra "
            "(lava-nc==0.10.0, lava-dl==0.6.0) in a Python 3.10 environment, e.g. with 'make venv'") from None


LOIHI2_MISSING = ("--backend loihi2 needs Intel's lava-loihi extension (NeuroCore compiler, INRC members only), "
                  "which is not installed here: run on Lava's CPU simulator with --backend lava-sim")


def require_loihi2() -> None:
    """Raise a one-line FastSNNError unless Intel's lava-loihi extension can be imported."""
    require_lava()
    try:
        from lava.magma.compiler.subcompilers.nc.ncproc_compiler import NcProcCompiler  # noqa: F401
        from lava.magma.core.run_configs import Loihi2HwCfg  # noqa: F401
    except Exception as e:
        raise FastSNNError(f"{LOIHI2_MISSING} ({type(e).__name__}: {str(e)[:60]})") from None
