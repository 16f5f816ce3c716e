"""A ``sweep:`` grid: every point runs in its own folder; one comparison table and plot.

Points are numbered from 1, as the progress lines count them (``point_1``, ...). A point whose
folder already holds a finished run (its ``summary.json`` with every step and no error) is not
run again: ``adamax-engine run`` on the same config and folder resumes a sweep point by point.
"""
import csv
import json
import os

from . import plots
from .runner import run

COLUMNS = ("final_loss", "best_loss", "accuracy", "seconds")


def run_sweep(spec, out_dir, log=print, progress=False):
    """Run each grid point into ``out_dir/point_<k>``; write ``sweep.csv``, ``sweep.json``
    (a missing accuracy is null) and ``sweep.png``; log the table. Returns the rows."""
    os.makedirs(out_dir, exist_ok=True)
    rows, curves = [], {}
    total = len(spec["sweep"])
    for k, (values, point) in enumerate(spec["sweep"], start=1):
        label = ", ".join(f"{key.split('.')[-1]}={v}" for key, v in values.items())
        point_dir = os.path.join(out_dir, f"point_{k}")
        point["experiment"]["name"] = f"{spec['experiment']['name']}[{label}]"
        summary = _finished(point_dir, point["experiment"]["steps"])
        if summary is not None:
            log(f"[{k}/{total}] {label}: done before, kept")
        else:
            log(f"[{k}/{total}] {label}")
            summary = run(point, point_dir, log=log, progress=progress)
        rows.append({"point": k, **values, "final_loss": summary["final_loss"],
                     "best_loss": summary["best_loss"], "accuracy": summary.get("accuracy"),
                     "seconds": round(summary["seconds"], 3)})
        with open(os.path.join(point_dir, "metrics.csv"), encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
        curves[label] = ([float(r["loss"]) for r in table], [float(r["lr"]) for r in table])
    with open(os.path.join(out_dir, "sweep.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    with open(os.path.join(out_dir, "sweep.json"), "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=2, default=str)
    best = min(rows, key=lambda r: r["final_loss"])
    title = f"{spec['experiment']['name']}: {len(rows)} points, best point {best['point']} " \
        f"(final loss {best['final_loss']:.4g})"
    plots.save(plots.curves_figure(curves, title=title), os.path.join(out_dir, "sweep.png"))
    for line in table_lines(rows):
        log(line)
    log(f"best: point {best['point']} (final loss {best['final_loss']:.6g})")
    return rows


def _finished(point_dir, steps):
    """The summary of a point run to its end before, else None."""
    try:
        with open(os.path.join(point_dir, "summary.json"), encoding="utf-8") as fh:
            summary = json.load(fh)
    except (OSError, ValueError):
        return None
    done = summary.get("steps") == steps and "error" not in summary and \
        "stopped" not in summary
    return summary if done and os.path.exists(os.path.join(point_dir, "metrics.csv")) else None


def table_lines(rows):
    """The sweep as an aligned text table (one header line, one line per point)."""
    keys = list(rows[0])
    cells = [[_cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.split(".")[-1].ljust(w) for k, w in zip(keys, widths))
    return [line] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
