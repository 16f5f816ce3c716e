"""The pictures: curves.png names its run and final loss, sweep.png tells coinciding points
apart and drops a constant lr panel, bench.png labels every panel and plots the transformer
and small-tensor speed-ups with the ceiling's own speed-up marked."""
import json
import os

import pytest

from adamax_engine import cli
from adamax_engine.bench import plot as bench_plot
from adamax_engine.experiments import plots

pytest.importorskip("matplotlib")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _close(fig):
    plots.pyplot().close(fig)


def test_curves_title_names_the_run_and_its_final_numbers():
    summary = {"name": "spirals", "final_loss": 0.0123456, "accuracy": 0.98125, "steps": 300}
    assert plots.run_title(summary) == \
        "spirals: final loss 0.01235, accuracy 0.981 (300 steps)"
    assert plots.run_title({**summary, "error": "x"}).endswith("(300 steps) - failed")
    fig = plots.curves_figure({"spirals": ([3.0, 2.0, 1.0], [0.0, 0.1, 0.2])},
                              title=plots.run_title(summary))
    assert fig._suptitle.get_text() == "spirals: final loss 0.01235, accuracy 0.981 (300 steps)"
    loss_ax, lr_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and lr_ax.get_title() == "learning rate"
    assert list(lr_ax.lines[0].get_ydata()) == [0.0, 0.1, 0.2]
    _close(fig)


def test_sweep_lines_are_distinguishable_and_a_constant_lr_has_no_panel():
    same = [1.0, 0.5, 0.25]
    fig = plots.curves_figure({"a": (same, [0.1] * 3), "b": (same, [0.1] * 3),
                               "c": ([2.0, 1.0, 0.9], [0.1] * 3)})
    (ax,) = fig.axes  # the lr is constant everywhere: one panel, the lr in its title
    assert ax.get_title() == "loss (constant lr 0.1)"
    looks = {(ln.get_linestyle(), ln.get_marker()) for ln in ax.lines}
    assert len(looks) == 3 and all(marker not in ("None", None, "") for _, marker in looks)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    _close(fig)
    fig = plots.curves_figure({"a": (same, [0.1, 0.2, 0.3]), "b": (same, [0.1] * 3)})
    assert len(fig.axes) == 2  # one run's lr moves: the panel is back
    _close(fig)


def test_run_folder_has_a_titled_curves_png(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["run", os.path.join(ROOT, "configs", "quadratic.yaml"), "--out", str(out),
                     "--no-progress", "--set", "experiment.steps=5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "curves.png").stat().st_size > 1000
    assert plots.run_title(summary).startswith(f"{summary['name']}: final loss ")


def _row(workload, n, tensors, threads, **ms):
    again = ms.pop("engine_again", None)
    return {"workload": workload, "n_params": n, "n_tensors": tensors, "threads": threads,
            "engine_with_peers_s": again / 1e3 if again else None,
            "impls": {k: {"status": "ok", "median_s": v / 1e3, "ns_per_element": v / n * 1e6}
                      for k, v in ms.items()} | {"paddle": {"status": "skipped", "note": "-"}}}


RESULTS = [_row("1 tensor of 1e+03", 1000, 1, t, ceiling=0.01, engine=0.02, torch=0.3)
           for t in (1, 2)] + [
    _row("1 tensor of 1e+06", 10 ** 6, 1, t, ceiling=1.0, engine=1.1, torch=3.0) for t in (1, 2)
] + [_row("transformer 73 tensors", 23 * 10 ** 6, 73, t, ceiling=20.0, engine=22.0,
          engine_again=25.0, torch=50.0, torch_foreach=100.0) for t in (1, 2)] + [
    _row("2000 small tensors", 4 * 10 ** 6, 2000, t, ceiling=4.0, engine=5.0, torch=90.0)
    for t in (1, 2)]


def test_bench_speedups_use_the_engine_time_taken_with_the_peers():
    ups = bench_plot.speedups(RESULTS[4])
    assert ups == {"torch": pytest.approx((2.0, 2.5)), "torch_foreach": pytest.approx((4.0, 5.0))}
    assert bench_plot.speedups(RESULTS[6]) == {"torch": pytest.approx((18.0, 22.5))}


def test_bench_figure_panels_labels_and_workloads():
    fig = bench_plot.figure(RESULTS)
    top = [ax for ax in fig.axes if ax.get_title().startswith("one tensor")]
    assert [ax.get_title() for ax in top] == ["one tensor, 1 thread(s)", "one tensor, 2 thread(s)"]
    fig.canvas.draw()
    for ax in top:  # each panel has its own y tick labels and its own legend
        assert any(t.get_text() for t in ax.get_yticklabels())
        assert {t.get_text() for t in ax.get_legend().get_texts()} == {"ceiling", "engine", "torch"}
        colours = {ln.get_label(): ln.get_color() for ln in ax.lines}
        assert len(set(colours.values())) == 3
    bars = {ax.get_title(): ax for ax in fig.axes if ax.patches}
    assert set(bars) == {"transformer 73 tensors", "2000 small tensors"}
    tf = bars["transformer 73 tensors"]
    assert [t.get_text() for t in tf.get_xticklabels()] == ["torch", "torch_foreach"]
    heights = sorted(round(p.get_height(), 6) for p in tf.patches)
    assert heights == [2.0, 2.0, 4.0, 4.0]  # two thread counts, two peers
    marks = sorted(round(float(y), 6) for c in tf.collections for _, y in c.get_offsets())
    assert marks == [2.5, 2.5, 5.0, 5.0]  # the ceiling's own speed-up over each peer
    _close(fig)
