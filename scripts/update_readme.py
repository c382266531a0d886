"""Write the demo's results (build/demo/demo.json, from `make demo`) into README.md.

Usage: python scripts/update_readme.py [build/demo/demo.json]
Replaces the text between the markers <!-- demo-table:start --> and <!-- demo-table:end -->.
"""
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastsnn_lava.atomic import fill_section  # noqa: E402
from fastsnn_lava.cli.demo import table  # noqa: E402

src = Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo/demo.json")
rows = json.loads(src.read_text())
readme = Path(__file__).resolve().parent.parent / "README.md"
body = (f"{table(rows)}\n\nMeasured by `make demo` ({rows[0]['test_samples']} digits test samples; "
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}); "
        "regenerate with `python scripts/update_readme.py`.")
fill_section(readme, "demo-table", body)
print(body)
