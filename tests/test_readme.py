"""The README's demo table and its staleness check (scripts/update_readme.py --check, run by .ci/run)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows(script, text):
    """demo.json rows equal to the README's table (fractions, as the demo writes them)."""
    return [dict({c: v / 100 for c, v in r.items() if c in script.COLUMNS}, arch=arch, lava_reference_agreement=1.0)
            for arch, r in script.readme_rows(text).items()]


def test_readme_demo_table_parses_and_a_moved_accuracy_is_stale(repository_file):
    script = repository_file("scripts/update_readme.py")
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


def _section(text, tag):
    return text.split(f"<!-- {tag}:start -->\n", 1)[1].split(f"<!-- {tag}:end -->", 1)[0].rstrip("\n")


def test_readme_tables_are_what_their_scripts_render_from_the_committed_json(repository_file):
    """A table edited by hand, or rendered by code that has changed since, fails here: rerun its script
    (the test names it). The demo table is checked against a fresh `make demo` by .ci/run instead."""
    import json
    text = (ROOT / "README.md").read_text()
    fashion = repository_file("scripts/results_table.py")
    checked = 0
    results = ROOT / "benchmarks" / "results"
    tables = sorted(results.glob("fashion_*.json")) + sorted(results.glob("cifar10_*.json"))
    for path in [p for p in tables if p.name != "cifar10_accuracy_vs_t.json"]:
        prefix, arch = path.stem.split("_", 1)
        doc = json.loads(path.read_text())
        dataset = doc.get("dataset", "fashion-mnist").split()[0]
        assert fashion.PREFIX[dataset] == prefix, path
        want, tag = fashion.readme_body(doc, arch), fashion.section(arch, dataset)
        assert _section(text, tag) == want, (f"README's {tag} is stale: python scripts/results_table.py "
                                             f"--dataset {dataset} --arch {arch} --readme-only")
        checked += 1
    assert checked >= 3
    vs_t = results / "cifar10_accuracy_vs_t.json"
    if vs_t.exists():
        cifar = repository_file("scripts/cifar_accuracy_vs_t.py")
        assert _section(text, "cifar10-accuracy-vs-t") == cifar.render(json.loads(vs_t.read_text())), \
            "README's cifar10-accuracy-vs-t is stale: python scripts/cifar_accuracy_vs_t.py --readme-only"
    bench = repository_file("scripts/update_bench_table.py")
    assert _section(text, "bench-table") == bench.render().rstrip("\n"), \
        "README's bench-table is stale: python scripts/update_bench_table.py"


def test_update_readme_without_the_demo_results_is_one_line_and_exit_2(tmp_path):
    """``update_readme.py --check`` before ``make demo`` (no demo.json) or on a junk file: which file and what
    to do in one line, exit 2, the README untouched; not a traceback."""
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    junk = tmp_path / "demo.json"
    junk.write_text("{not json")
    rows = tmp_path / "rows.json"
    rows.write_text('[{"arch": "cnn"}]')  # JSON, but not the demo's rows
    for path in (tmp_path / "missing.json", junk, rows):
        for flags in (["--check"], []):
            r = subprocess.run([sys.executable, str(ROOT / "scripts" / "update_readme.py"), str(path), *flags],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 2, r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and str(path) in lines[0] and "make demo" in lines[0], r.stderr
    assert (ROOT / "README.md").read_text() == readme
