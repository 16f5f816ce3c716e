"""`adamax-engine bench` end to end at tiny sizes: outputs, JSON schema, skipped peers.
(No timing is asserted: figures are reported, never tested.)"""
import importlib.util
import json
import sys

import numpy as np
import pytest

from adamax_engine import cli
from adamax_engine.bench import run as bench_run


def test_bench_command_writes_table_json_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    out = tmp_path / "bench"
    assert cli.main(["bench", "--tiny", "--threads", "1", "--reps", "2", "--no-cold",
                     "--no-progress", "--sizes", "1000", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| workload | threads | ceiling | engine |" in text
    assert "- torch: skipped (torch is not installed)" in text
    report = json.loads((out / "bench.json").read_text())
    assert set(report) == {"machine", "config", "results", "cold_start"}
    for key in ("cpu", "cores", "numpy", "numba", "threading_layer", "python", "date"):
        assert key in report["machine"]
    assert report["config"]["sizes"] == [1000] and report["config"]["threads"] == [1]
    assert [r["workload"] for r in report["results"]] == [
        "1 tensor of 1e+03", "transformer (tiny)", "50 small tensors"]
    for r in report["results"]:
        assert r["threads"] == 1 and r["n_params"] > 0
        assert r["impls"]["torch"] == {"status": "skipped", "note": "torch is not installed"}
        for name in ("ceiling", "engine", "engine_borrow", "engine_full", "numpy_reference"):
            row = r["impls"][name]
            assert row["status"] == "ok" and row["median_s"] > 0 and row["spread_s"] >= 0
            assert row["ns_per_element"] == pytest.approx(row["median_s"] / r["n_params"] * 1e9)
        assert r["impls"]["engine"]["bytes_per_element"] == 28
        assert r["engine_with_peers_s"] > 0  # the engine's second loop, with the frameworks
    cs = report["cold_start"]
    assert cs["warm_cache_s"] > 0 and "empty_cache_s" not in cs
    assert cs["warm"]["min_s"] <= cs["warm_cache_s"] <= cs["warm"]["max_s"]
    assert 0 < cs["warm"]["dependencies_import_s"] < cs["warm"]["max_s"]
    if importlib.util.find_spec("scipy") is not None:  # the dependencies-only install, measured
        assert cs["without_scipy"]["median_s"] > 0
    assert "import + first step, warm caches" in text
    assert (out / "bench.md").read_text().startswith("| workload |")
    if pytest.importorskip("matplotlib"):
        assert (out / "bench.png").stat().st_size > 1000


def test_bench_bad_arguments(capsys):
    assert cli.main(["bench", "--sizes", "1e3,lots"]) == 2
    assert "--sizes: expected comma-separated whole numbers" in capsys.readouterr().err
    assert cli.main(["bench", "--device", "tpu"]) == 2


def test_default_workloads():
    names = [n for n, _ in bench_run.workloads(bench_run.SIZES)]
    assert names[0] == "1 tensor of 1e+03" and names[5] == "1 tensor of 1e+08"
    assert names[-2:] == ["transformer 73 tensors", "2000 small tensors"]


def test_engine_and_ceiling_share_a_loop_without_the_frameworks(monkeypatch):
    """measure() times OWN in one round-robin loop and the rest (+ the engine) in another."""
    loops = []

    def fake_timeit_all(fns, reps, on_rep=None):
        loops.append(sorted(fns))
        return {name: (1e-3, 0.0) for name in fns}
    monkeypatch.setattr(bench_run, "timeit_all", fake_timeit_all)
    r = bench_run.measure("tiny", [(100,)], 1, 2, ["ceiling", "engine", "numpy_reference",
                                                  "engine_full"])
    assert loops == [["ceiling", "engine", "engine_full"], ["engine", "numpy_reference"]]
    assert r["engine_with_peers_s"] == 1e-3 and r["impls"]["engine"]["median_s"] == 1e-3


def test_paired_ratio_is_the_median_of_same_round_ratios():
    from adamax_engine.bench.timing import paired_ratio, summary
    rounds = {"a": np.array([2.0, 40.0, 30.0]), "b": np.array([1.0, 20.0, 10.0])}
    assert paired_ratio(rounds, "a", "b") == 2.0  # per round: 2, 2, 3
    assert summary(rounds)["a"][0] / summary(rounds)["b"][0] == 3.0  # ratio of medians


def test_clip_floor_adds_one_read_of_the_grads_to_the_ceiling():
    assert bench_run.clip_floor({"ceiling": 4.0, "read_ceiling": 1.0}) == 1.25
