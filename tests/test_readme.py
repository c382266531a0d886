"""The README's demo table and its staleness check (scripts/update_readme.py --check, run by .ci/run)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("fastsnn_update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(script, text):
    """demo.json rows equal to the README's table (fractions, as the demo writes them)."""
    return [dict({c: v / 100 for c, v in r.items() if c in script.COLUMNS}, arch=arch, lava_reference_agreement=1.0)
            for arch, r in script.readme_rows(text).items()]


def test_readme_demo_table_parses_and_a_moved_accuracy_is_stale():
    script = _script()
    text = (ROOT / "README.md").read_text()
    rows = _rows(script, text)
    assert [r["arch"] for r in rows] == ["mlp", "cnn"]
    assert script.stale(rows, text) == []
    near = [dict(r, qann_accuracy=r["qann_accuracy"] + 0.9 * script.TOLERANCE_PP / 100) for r in rows]
    assert script.stale(near, text) == []  # another machine's rounding: within the stated tolerance
    far = [dict(r, qann_accuracy=r["qann_accuracy"] + 1.1 * script.TOLERANCE_PP / 100) for r in rows]
    assert len(script.stale(far, text)) == 2 and "qann_accuracy" in script.stale(far, text)[0]
    lava_off = [dict(rows[0], lava_accuracy=rows[0]["reference_accuracy"] - 1 / 360)] + rows[1:]
    assert any("Lava differs" in p for p in script.stale(lava_off, text))  # the integer side never moves
    assert script.stale(rows[:1] + [dict(rows[1], arch="resnet")], text)[0].startswith("resnet: no row")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"fastsnn_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(text, tag):
    return text.split(f"<!-- {tag}:start -->\n", 1)[1].split(f"<!-- {tag}:end -->", 1)[0].rstrip("\n")


def test_readme_tables_are_what_their_scripts_render_from_the_committed_json():
    """A table edited by hand, or rendered by code that has changed since, fails here: rerun its script
    (the test names it). The demo table is checked against a fresh `make demo` by .ci/run instead."""
    import json
    text = (ROOT / "README.md").read_text()
    fashion = _load("fashion_table")
    checked = 0
    for path in sorted((ROOT / "benchmarks" / "results").glob("fashion_*.json")):
        arch = path.stem.split("_", 1)[1]
        want = fashion.readme_body(json.loads(path.read_text()), arch)
        assert _section(text, fashion.section(arch)) == want, \
            f"README's {fashion.section(arch)} is stale: python scripts/fashion_table.py --arch {arch} --readme-only"
        checked += 1
    assert checked >= 3
    bench = _load("update_bench_table")
    assert _section(text, "bench-table") == bench.render().rstrip("\n"), \
        "README's bench-table is stale: python scripts/update_bench_table.py"
