"""A ``sweep:`` grid: every point runs in its own folder; one comparison table and plot."""
import csv
import json
import os

from .runner import plot_curves, run


def run_sweep(spec, out_dir, log=print, progress=False):
    """Run each grid point into ``out_dir/point_<i>``; write ``sweep.csv`` and ``sweep.png``.

    Returns the table rows (one dict per point: its grid values and summary figures).
    """
    os.makedirs(out_dir, exist_ok=True)
    rows, curves = [], {}
    for i, (values, point) in enumerate(spec["sweep"]):
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())
        log(f"[{i + 1}/{len(spec['sweep'])}] {label}")
        point_dir = os.path.join(out_dir, f"point_{i}")
        point["experiment"]["name"] = f"{spec['experiment']['name']}[{label}]"
        summary = run(point, point_dir, log=log, progress=progress)
        rows.append({"point": i, **values, "final_loss": summary["final_loss"],
                     "best_loss": summary["best_loss"], "accuracy": summary.get("accuracy", ""),
                     "seconds": round(summary["seconds"], 3)})
        with open(os.path.join(point_dir, "metrics.csv"), encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
        curves[label] = ([float(r["loss"]) for r in table], [float(r["lr"]) for r in table])
    with open(os.path.join(out_dir, "sweep.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out_dir, "sweep.json"), "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=2, default=str)
    plot_curves(os.path.join(out_dir, "sweep.png"), curves)
    best = min(rows, key=lambda r: r["final_loss"])
    log(f"best point: {best}")
    return rows
