"""Options, defaults and choices are written once (fastsnn_lava.options) and shared by the command line,
the Python API and the library; the package's imports form no cycle and point down, never into cli/."""
import argparse
import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import fastsnn_lava
from fastsnn_lava import options


def test_importing_options_and_parsing_help_do_not_import_torch():
    code = ("import sys, fastsnn_lava.options, fastsnn_lava.cli.train as t\n"
            "try:\n    t.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def _parsed(module, argv) -> dict:
    """{dest: value} that a command's parser gives for ``argv``, caught at parse time (no work is done)."""
    seen, parse = {}, argparse.ArgumentParser.parse_args

    def grab(self, args=None, namespace=None):
        seen.update(vars(parse(self, args, namespace)))
        raise SystemExit(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", grab)
        with pytest.raises(SystemExit):
            module.main(argv)
    return seen


@pytest.mark.parametrize("command,cls,argv", [
    ("train", options.TrainOptions, ["-o", "x.pt"]), ("export", options.ExportOptions, ["m.pt", "-o", "x.h5"]),
    ("finetune", options.TuneOptions, ["m.pt", "-o", "x.pt"]), ("run", options.RunOptions, ["n.h5"]),
    ("report", options.ReportOptions, ["n.h5"]), ("diagnose", options.DiagnoseOptions, ["m.pt"]),
    ("demo", options.DemoOptions, [])])
def test_each_command_parses_to_its_options_defaults(command, cls, argv):
    parsed = _parsed(importlib.import_module(f"fastsnn_lava.cli.{command}"), argv)
    want = dict(options.defaults(cls), **({"out": "x.pt"} if cls is options.TrainOptions else {}))
    want.pop("accuracy_samples", None)  # API only
    assert {k: parsed.get(k, "no flag") for k in want} == want
    assert dataclasses.asdict(cli_options(cls, parsed)) == dict(options.defaults(cls), **want)


def cli_options(cls, parsed):
    from fastsnn_lava.cli.common import options as build
    return build(cls, argparse.Namespace(**parsed))


def test_the_api_defaults_are_the_options_defaults():
    from fastsnn_lava import cuba, pipeline, training

    def kw(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}
    for fn, cls in ((pipeline.train, options.TrainOptions), (pipeline.export, options.ExportOptions),
                    (pipeline.finetune, options.TuneOptions), (pipeline.diagnose, options.DiagnoseOptions),
                    (pipeline.run, options.RunOptions), (pipeline.report, options.ReportOptions)):
        d, ours = kw(fn), options.defaults(cls)
        shared = {k for k in d if k in ours and (fn, k) != (pipeline.run, "backend")}
        assert len(shared) >= 3 and {k: d[k] for k in shared} == {k: ours[k] for k in shared}, fn.__name__
    assert set(options.defaults(options.TuneOptions)) - {"dataset"} <= set(kw(pipeline.finetune))
    t = kw(training.train)
    assert {k: t[k] for k in ("epochs", "qat_epochs", "batch_size", "lr", "qat_lr", "seed")} == {
        k: options.defaults(options.TrainOptions)[k] for k in ("epochs", "qat_epochs", "batch_size", "lr", "qat_lr",
                                                               "seed")}
    assert kw(cuba.to_cuba)["threshold"] == options.ExportOptions.cuba_threshold == options.CUBA_THRESHOLD
    assert set(pipeline.TUNING) == set(options.TUNERS) and pipeline.evaluate is pipeline.run
    assert kw(pipeline.run)["backend"] == options.RUN_BACKEND == "reference"  # the API's; fastsnn-run's is lava-sim


def test_the_library_checks_the_very_choice_lists_of_options():
    from fastsnn_lava import cuba, evaluation
    assert cuba.THRESHOLD_MODES is options.CUBA_THRESHOLDS
    assert evaluation.BACKENDS is options.BACKENDS
    layerwise, tandem = (importlib.import_module(f"fastsnn_lava.tuning.{m}") for m in ("layerwise", "distillation"))
    assert tandem.SCHEDULES is options.SCHEDULES and tandem.GRADIENTS is options.GRADIENTS
    assert layerwise.RULES is options.RULES and tandem.LR == options.TANDEM_LR


def test_options_are_frozen():
    o = options.TrainOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.bits = 3


# --- the import graph --------------------------------------------------------------------------------

def _main_guard(node) -> bool:
    """``if __name__ == "__main__":``: a script's entry, not an import of the module."""
    t = node.test
    return (isinstance(node, ast.If) and isinstance(t, ast.Compare) and isinstance(t.left, ast.Name)
            and t.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                               for c in t.comparators))


def _imports(tree, lazy: bool = True) -> list:
    """Every Import/ImportFrom node outside ``__main__`` guards; ``lazy``: also those inside functions
    (which run when called, not when the module is imported)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if (isinstance(node, ast.If) and _main_guard(node)) or (
                not lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path, package: str, lazy: bool = True) -> dict:
    """{module: {package modules it imports}} of the package in folder ``root`` (its ``*.py`` files, read with
    ast, nothing imported; ``from .x import y`` counts x, and x.y when y is a submodule)."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        ispkg = parts[-1] == "__init__"
        files[".".join((package, *(parts[:-1] if ispkg else parts)))] = (path, ispkg)
    graph = {}
    for name, (path, ispkg) in files.items():
        base = name if ispkg else name.rsplit(".", 1)[0]
        edges = set()
        for node in _imports(ast.parse(path.read_text()), lazy):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                parts = base.split(".")
                mod = ".".join(parts[:len(parts) - node.level + 1]) if node.level else ""
                mod = ".".join(x for x in (mod, node.module) if x)
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict) -> list | None:
    """One import cycle [a, b, ..., a] of the graph, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None
    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


ROOT = Path(fastsnn_lava.__file__).parent


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "planted"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import x\n")
    (pkg / "d.py").write_text("from .a import y\nif __name__ == '__main__':\n    from .d2 import z\n")
    (pkg / "d2.py").write_text("from . import d\n")
    graph = import_graph(pkg, "planted")
    assert graph["planted.sub.c"] == {"planted.a"} and graph["planted.d"] == {"planted.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"planted.a", "planted.b", "planted.sub.c"}
    assert find_cycle(import_graph(pkg, "planted", lazy=False)) is None  # b imports c only when f() runs
    (pkg / "b.py").write_text("from .sub.c import g\n")
    assert find_cycle(import_graph(pkg, "planted", lazy=False)) is not None
    (pkg / "sub" / "c.py").write_text("x = 1\n")
    assert find_cycle(import_graph(pkg, "planted")) is None


def test_fastsnn_lava_has_no_import_cycle():
    graph = import_graph(ROOT, "fastsnn_lava", lazy=False)
    assert len(graph) > 30 and "fastsnn_lava.options" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    graph = import_graph(ROOT, "fastsnn_lava")  # with the imports inside functions
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_nothing_outside_cli_imports_cli_and_options_import_nothing_of_the_package():
    graph = import_graph(ROOT, "fastsnn_lava")
    cli = {n for n in graph if n == "fastsnn_lava.cli" or n.startswith("fastsnn_lava.cli.")}
    up = {n: sorted(e & cli) for n, e in graph.items() if n not in cli}
    assert not {n: e for n, e in up.items() if e}
    assert graph["fastsnn_lava.options"] == set() and "fastsnn_lava.cli.common" in graph["fastsnn_lava.cli.train"]
