"""``bench.png``: what one ``adamax-engine bench`` run measured, in one figure.

Top row, one panel per thread count: ns per element per step against the size of one tensor,
log-log, every implementation in its own colour (the bounds black/grey dotted, the engine's
variants solid, the frameworks dashed). Bottom row, one panel per many-tensor workload (the
transformer, the small tensors): the engine's speed-up over each framework as bars, one per
thread count, with the same-traffic ceiling's own speed-up over that framework marked, which
bounds what any implementation could reach there.
"""
from ..experiments.plots import pyplot
from .peers import CPU_IMPLEMENTATIONS

PEERS = ("torch", "torch_foreach", "paddle", "optax_jit")
#: (colour, line style) per implementation: bounds dotted, engine solid, frameworks dashed
LOOK = {"ceiling": ("black", ":"), "read_ceiling": ("grey", ":"),
        "engine": ("tab:blue", "-"), "engine_borrow": ("tab:orange", "-"),
        "engine_full": ("tab:green", "-"), "engine_on_torch": ("tab:cyan", "-"),
        "engine_on_paddle": ("tab:olive", "-"), "numpy_reference": ("tab:brown", "--"),
        "torch": ("tab:red", "--"), "torch_foreach": ("tab:pink", "--"),
        "paddle": ("tab:purple", "--"), "optax_jit": ("goldenrod", "--"),
        "engine_bf16": ("tab:blue", "-."), "ceiling_bf16": ("dimgrey", ":"),
        "torch_front": ("tab:cyan", "-."), "optax_front_jit": ("goldenrod", "-."),
        "engine_int8": ("tab:gray", "-."), "ceiling_int8": ("silver", ":")}


def _times(row):
    return {k: v["median_s"] for k, v in row["impls"].items() if v.get("status") == "ok"}


def speedups(row):
    """{peer: (engine's speed-up, the ceiling's own speed-up)} for one measured workload; the
    engine's time is the one taken in the frameworks' loop when there is one, as in bench.md."""
    t = _times(row)
    mine = row.get("engine_with_peers_s") or t.get("engine")
    return {p: (t[p] / mine, t[p] / t["ceiling"] if "ceiling" in t else None)
            for p in PEERS if p in t and mine}


def figure(results):
    """The figure described in the module docstring (None without matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    single = [r for r in results if r["n_tensors"] == 1]
    many = list(dict.fromkeys(r["workload"] for r in results if r["n_tensors"] > 1))
    threads = sorted({r["threads"] for r in results})
    cols = max(len(threads), len(many), 1)
    fig, axes = plt.subplots(2, cols, figsize=(5.5 * cols, 8.5), squeeze=False)
    for ax, n_threads in zip(axes[0], threads):
        rows = [r for r in single if r["threads"] == n_threads]
        for impl in CPU_IMPLEMENTATIONS:
            pts = [(r["n_params"], r["impls"][impl]["ns_per_element"]) for r in rows
                   if r["impls"].get(impl, {}).get("status") == "ok"]
            if pts:
                colour, style = LOOK.get(impl, ("tab:gray", "-."))
                ax.plot(*zip(*pts), linestyle=style, marker="o", markersize=4, color=colour,
                        label=impl)
        ax.set(xscale="log", yscale="log", xlabel="parameters (one tensor)",
               ylabel="ns per element per step", title=f"one tensor, {n_threads} thread(s)")
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
    for ax, name in zip(axes[1], many):
        _speedup_bars(ax, [r for r in results if r["workload"] == name], threads)
        ax.set_title(name)
    for ax in list(axes[0][len(threads):]) + list(axes[1][len(many):]):
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _speedup_bars(ax, rows, threads):
    width = 0.8 / max(1, len(threads))
    peers_seen = [p for p in PEERS if any(p in speedups(r) for r in rows)]
    for k, n_threads in enumerate(threads):
        row = next((r for r in rows if r["threads"] == n_threads), None)
        ups = speedups(row) if row else {}
        xs = [i + (k - (len(threads) - 1) / 2) * width for i, p in enumerate(peers_seen)
              if p in ups]
        got = [ups[p] for p in peers_seen if p in ups]
        if not got:
            continue
        bars = ax.bar(xs, [g[0] for g in got], width, label=f"engine, {n_threads} thread(s)")
        ax.bar_label(bars, labels=[f"{g[0]:.1f}x" for g in got], fontsize=7)
        ceiling = [(x, g[1]) for x, g in zip(xs, got) if g[1]]
        if ceiling:
            ax.scatter(*zip(*ceiling), marker="_", s=400, color="black", zorder=3,
                       label="ceiling's own speed-up" if k == 0 else None)
    ax.set_xticks(range(len(peers_seen)), peers_seen)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set(ylabel="speed-up over the framework (x)")
    if ax.patches:
        ax.legend(fontsize=7)


def save(results, path):
    """Write bench.png; False without matplotlib."""
    fig = figure(results)
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return True
