"""The pictures a run and a sweep leave: ``curves.png`` and ``sweep.png``.

``curves_figure`` builds the figure and returns it (tests read its titles, lines and panels);
``save`` writes it. matplotlib is optional: without it nothing is drawn and the caller says so.
"""
import itertools

#: line styles and markers cycled together, so two sweep points whose curves coincide still
#: show as two (a dashed line with squares over a solid one with circles)
STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _constant(values):
    return len(values) == 0 or all(v == values[0] for v in values)


def run_title(summary):
    """'<name>: final loss 0.0123, accuracy 0.981 (300 steps)' from a run's summary."""
    parts = [f"final loss {summary['final_loss']:.4g}" if summary.get("final_loss")
             is not None else "no step finished"]
    if summary.get("accuracy") is not None:
        parts.append(f"accuracy {summary['accuracy']:.3f}")
    tail = f" ({summary['steps']} steps)" if summary.get("steps") else ""
    if summary.get("error"):
        tail += " - failed"
    elif summary.get("stopped"):
        tail += " - stopped"
    return f"{summary['name']}: " + ", ".join(parts) + tail


def curves_figure(runs, title=None):
    """Loss per step (log scale when every loss is > 0) for each run, and the learning rate in
    a second panel unless every run keeps one constant lr. ``runs``: {label: (losses, lrs)}."""
    plt = pyplot()
    if plt is None:
        return None
    show_lr = not all(_constant(lrs) for _, lrs in runs.values())
    fig, axes = plt.subplots(1, 2 if show_lr else 1, figsize=(10 if show_lr else 6, 4),
                             squeeze=False)
    ax_loss = axes[0][0]
    many = len(runs) > 1
    looks = itertools.cycle(itertools.product(STYLES, MARKERS))
    for label, (losses, lrs) in runs.items():
        style, marker = next(looks)
        look = {"linestyle": style, "marker": marker if many else None,
                "markevery": max(1, len(losses) // 12), "markersize": 4, "label": label}
        ax_loss.plot(losses, **look)
        if show_lr:
            axes[0][1].plot(lrs, **look)
    positive = all(min(losses, default=1) > 0 for losses, _ in runs.values())
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log" if positive else "linear",
                title="loss")
    if show_lr:
        axes[0][1].set(xlabel="step", ylabel="lr", title="learning rate")
    elif runs:
        lr = next(iter(runs.values()))[1]
        ax_loss.set_title(f"loss (constant lr {lr[0]:.3g})" if lr else "loss")
    if many:
        ax_loss.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` and free it; False when there was no figure to write."""
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return True
