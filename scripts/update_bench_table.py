"""Render benchmarks/results/*.json (from `make bench`) as the README's benchmark table.

Usage: python scripts/update_bench_table.py [results-dir]
Replaces the text between <!-- bench-table:start --> and <!-- bench-table:end --> in README.md
(and prints it). Every number comes from the result files; a missing file leaves its rows out.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fastsnn_lava.atomic import fill_section  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"


def load(name):
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fmt(v, digits=3):
    return "—" if v is None else f"{v:,.{digits}g}" if isinstance(v, float) else str(v)


def rows():
    out, machine = [], None
    r = load("throughput")
    if r:
        machine = dict(r["machine"], load_before=r.get("load_average_before"))
        for n in r["nets"]:
            a = n["arch"]
            if "lava_images_per_s" in n:
                out.append(("Throughput, engine vs Lava (images/s)", a,
                            f"{n['engine_images_per_s']:,.0f} vs {n['lava_images_per_s']:,.1f} = "
                            f"**{n['speedup_vs_lava']:,.0f}×**", "≥ 300× (cnn5), ≥ 1000× (mlp)"))
                out.append(("Engine = Lava (identical output integers)", a,
                            f"{100 * n['agreement']:.1f} % of {n['lava_samples'][1]} samples", "100 %"))
            out.append(("Engine / dense-GEMM bound", a,
                        f"{n['engine_images_per_s']:,.0f} / {n['bound_images_per_s']:,.0f} = "
                        f"**{n['fraction_of_bound']:.2f}** ({n['macs_per_image'] / 1e6:.2f} M MAC/image)", "≥ 0.5"))
    r = load("accuracy_vs_t")
    if r:
        machine = machine or r["machine"]
        for n in r["nets"]:
            s = n["smallest_t_within_0.5pp"]
            more = sorted(k for k in s if k.startswith("fastsnn_signed_b"))
            out.append(("Smallest T within 0.5 pp of the float ANN: Fast-SNN signed b = "
                        + ", ".join([str(n["bits"])] + [k.rsplit("_b", 1)[1] for k in more])
                        + " / unsigned IF / rate-coded",
                        n["arch"], "**" + " / ".join(fmt(s[k]) for k in ["fastsnn_signed"] + more)
                        + f"** / {fmt(s['unsigned_if'])} / "
                        f"{fmt(s['rate_maxnorm'], 4) if s['rate_maxnorm'] else '> ' + max(n['curves']['rate_maxnorm'], key=int)} "
                        f"(ANN {100 * n['ann_accuracy']:.2f} %, {n['samples']} samples)", "few steps"))
    r = load("lava_cost")
    if r:
        for n in r["nets"]:
            out.append(("Lava ms/step, SignedIF vs vanilla CUBA", n["arch"],
                        f"{n['signed_if_ms_per_step']:.2f} vs {n['cuba_ms_per_step']:.2f} = **{n['ratio']:.2f}**",
                        "≤ 1.2"))
    r = load("training")
    if r:
        for n in r["nets"]:
            out.append(("Training throughput, QAT / float (epoch time float / QAT)", n["arch"],
                        f"{n['float_epoch_median_s']:.2f} s / {n['qat_epoch_median_s']:.2f} s = **{1 / n['ratio']:.2f}** "
                        f"({n['train_samples']} images)", "≥ 0.7"))
    r = load("finetune")
    if r:
        for n in r["nets"]:
            what = (f"**{n['median_wall_s'] / 60:.1f} min** measured" if n["measured_full_epoch"] else
                    f"**{n['median_full_epoch_estimate_s'] / 60:.1f} min** estimated from {n['samples_per_layer']:,} "
                    f"images per layer ({n['median_wall_s']:.0f} s)")
            out.append((f"Fine-tuning, one epoch per layer ({n['tuned_layers']} layers × "
                        f"{n['full_epoch_samples_per_layer']:,} images, b = {n['bits']})", n["arch"], what, "≤ 30 min"))
    r = load("export_cost")
    if r:
        for n in r["nets"]:
            out.append(("Export (checkpoint → checked net.h5)", n["arch"],
                        f"{n['export_median_s']:.2f} s, {n['file_bytes'] / 1024:,.0f} KiB", "—"))
    r = load("memory")
    if r:
        e = r.get("engine_cnn5_full_test_set")
        if e:
            out.append(("Peak memory, engine over the full test set", "cnn5",
                        f"**{e['tree_peak_pss_mib']:,.0f} MiB** PSS ({e['self_maxrss_mib']:,.0f} MiB max RSS)",
                        "≤ 2 GiB"))
        for a in ("mlp", "cnn5"):
            m = r.get(f"lava_{a}")
            if m:
                out.append((f"Peak memory, Lava run of {m['samples']:.0f} samples (all processes)", a,
                            f"{m['tree_peak_pss_mib']:,.0f} MiB PSS ({m['tree_peak_rss_mib']:,.0f} MiB summed RSS)",
                            "—"))
    return out, machine


def curves():
    r = load("accuracy_vs_t")
    if not r:
        return ""
    lines = []
    for n in r["nets"]:
        ts = [t for t in ("1", "2", "3", "4", "7", "8", "15", "16", "32", "64", "128", "256") if
              any(t in c for c in n["curves"].values())]
        lines += [f"\nAccuracy (%) vs T, {n['arch']} (b = {n['bits']}; float ANN {100 * n['ann_accuracy']:.2f} %, "
                  f"{n['samples']} test samples):\n", "| method | " + " | ".join(f"T={t}" for t in ts) + " |",
                  "|---" * (len(ts) + 1) + "|"]
        names = {"fastsnn_signed": f"Fast-SNN (signed IF), b = {n['bits']}", "unsigned_if": f"unsigned IF, b = {n['bits']}",
                 **{k: f"Fast-SNN (signed IF), b = {k.rsplit('_b', 1)[1]}" for k in sorted(n["curves"])
                    if k.startswith("fastsnn_signed_b")},
                 "rate_maxnorm": "rate-coded max-norm IF (peer)"}
        for k, label in names.items():
            c = n["curves"][k]
            lines.append(f"| {label} | " + " | ".join(f"{100 * c[t]:.1f}" if t in c else "" for t in ts) + " |")
    return "\n".join(lines)


def render():
    rs, m = rows()
    if not rs:
        return "No results yet: run `make bench`."
    body = ["| figure | net | measured (median of ≥ 3 runs) | goal |", "|---|---|---|---|"]
    body += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rs]
    text = "\n".join(body) + "\n" + curves()
    if m:
        v = m["versions"]
        text += (f"\n\nMeasured by `make bench{' FULL=1' if m['full'] else ''}` on {m['cpu']} ({m['cores']} cores"
                 f"{', GPU ' + m['gpu'] if m['gpu'] else ''}), torch {v['torch']}, numpy {v['numpy']}, "
                 f"lava-nc {v.get('lava-nc', '—')}, {m['date']}"
                 + (f", load average {load} before the run (a shared machine: timings not representative)"
                    if (load := m.get("load_before") or m.get("load_average_1min") or 0) > m["cores"] else "") + "; regenerate with `python scripts/update_bench_table.py`.")
    return text


def main():
    global RESULTS
    if len(sys.argv) > 1:
        RESULTS = Path(sys.argv[1])
    body = render()
    fill_section(ROOT / "README.md", "bench-table", body)
    print(body)


if __name__ == "__main__":
    main()
