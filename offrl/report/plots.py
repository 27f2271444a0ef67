"""The report's figures (matplotlib, drawn off-screen). Each function takes plain numbers and
returns a Figure; `png_bytes` turns it into the PNG that the report embeds and saves."""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from offrl.report.stats import Interval  # noqa: E402

DPI = 120


def colors_for(labels: Sequence[str]) -> dict[str, tuple]:
    """One colour per label, the same in every figure."""
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _label_width(labels: Sequence[str]) -> float:
    """Inches of y-tick text for the longest label (roughly 0.075 in per character at 9 pt)."""
    return 0.075 * max((len(label) for label in labels), default=0)


def aggregate_figure(rows: Sequence[tuple[str, Mapping[str, Interval]]], colors: Mapping[str, tuple],
                     score_name: str, confidence: float = 0.95) -> Figure:
    """One panel per statistic (IQM, mean): a horizontal interval per algorithm, point marked."""
    labels = [label for label, _ in rows]
    statistics = list(rows[0][1]) if rows else []
    height = 0.9 + 0.38 * len(rows)
    figure, axes = plt.subplots(1, len(statistics), figsize=(_label_width(labels) + 3.2 * len(statistics), height),
                                sharey=True, squeeze=False)
    for axis, statistic in zip(axes[0], statistics):
        for y, (label, intervals) in enumerate(rows):
            interval = intervals[statistic]
            axis.barh(y, interval.high - interval.low, left=interval.low, height=0.6, color=colors[label], alpha=0.75)
            axis.plot([interval.point, interval.point], [y - 0.3, y + 0.3], color="black", linewidth=1.5)
        axis.use_sticky_edges = False  # bars stick to their left edge; we want room around them
        axis.margins(x=0.08)
        axis.set_title(statistic, fontsize=11)
        axis.set_xlabel(score_name)
        axis.grid(axis="x", alpha=0.3)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=9)
    axes[0][0].set_ylim(-0.6, len(labels) - 0.4)
    axes[0][0].invert_yaxis()
    figure.suptitle(f"Aggregate over tasks: point estimate (black) and {confidence:.0%} stratified-bootstrap CI",
                    fontsize=10)
    figure.tight_layout()
    return figure


def profile_figure(taus: np.ndarray, profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                   colors: Mapping[str, tuple], score_name: str, confidence: float = 0.95) -> Figure:
    """Fraction of runs with score > tau, with pointwise bootstrap bands."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for label, (point, low, high) in profiles.items():
        # exact values at each tau; steps, not slopes, between grid points
        axis.plot(taus, point, color=colors[label], label=label, linewidth=1.8, drawstyle="steps-post")
        axis.fill_between(taus, low, high, color=colors[label], alpha=0.2, linewidth=0, step="post")
    axis.set_xlabel(f"{score_name} threshold τ")
    axis.set_ylabel("fraction of runs with score > τ")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(f"Performance profiles (shaded: {confidence:.0%} stratified-bootstrap band)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.tight_layout()
    return figure


def curves_figure(panels: Sequence[tuple[str, str, Mapping[str, tuple]]], colors: Mapping[str, tuple],
                  band_name: str) -> Figure:
    """One panel per dataset: for each algorithm the mean over seeds at each evaluation step,
    shaded by `band_name` where there are two seeds or more. A curve is (steps, mean, low, high)."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(max(4.6 * columns, 6.4), 3.4 * rows), squeeze=False)
    shown: dict[str, object] = {}
    for axis, (dataset, score_name, curves) in zip(axes.flat, panels):
        for label, (steps, mean_values, low, high) in curves.items():
            (line,) = axis.plot(steps, mean_values, color=colors[label], linewidth=1.6,
                                marker="o" if len(steps) == 1 else None, markersize=4)
            shown.setdefault(label, line)
            band = np.isfinite(low) & np.isfinite(high)
            if band.any():
                axis.fill_between(steps, np.where(band, low, mean_values), np.where(band, high, mean_values),
                                  color=colors[label], alpha=0.2, linewidth=0)
        axis.set_title(dataset, fontsize=10)
        axis.set_xlabel("gradient updates")
        axis.set_ylabel(score_name)
        axis.grid(alpha=0.3)
        axis.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(f"Learning curves: mean over seeds\nshaded: {band_name}", fontsize=10)
    figure.tight_layout()
    order = [label for label in colors if label in shown]
    figure.legend([shown[label] for label in order], order, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(len(shown), 4), fontsize=9, frameon=False)
    return figure


def improvement_figure(pairs: Sequence[tuple[str, str, Interval, bool]], confidence: float = 0.95) -> Figure:
    """P(X > Y) per pair (x, y, interval, significant) with its interval; 0.5 (no difference)
    dashed. Green: X better, red: Y better, grey: no significant difference."""
    names = [f"P({x} > {y})" for x, y, _, _ in pairs]
    figure, axis = plt.subplots(figsize=(_label_width(names) + 4.4, 1.3 + 0.38 * len(pairs)))
    for row, (_, _, interval, significant) in enumerate(pairs):
        color = "tab:gray"
        if significant and interval.low > 0.5:
            color = "tab:green"
        elif significant and interval.high < 0.5:
            color = "tab:red"
        axis.barh(row, interval.high - interval.low, left=interval.low, height=0.6, color=color, alpha=0.6)
        # the dot keeps a zero-width interval (all replicates equal, e.g. fully separated runs) visible
        axis.plot([interval.point], [row], marker="o", markersize=7, color=color, markeredgecolor="black", zorder=3)
    axis.axvline(0.5, color="black", linestyle="--", linewidth=1)
    axis.set_yticks(range(len(pairs)), names, fontsize=9)
    axis.set_ylim(-0.6, len(pairs) - 0.4)
    axis.invert_yaxis()
    axis.set_xlim(-0.03, 1.03)
    axis.set_xlabel("P(X > Y): probability that a run of X beats a run of Y")
    axis.set_title(f"Probability of improvement with {confidence:.0%} stratified-bootstrap CI\n"
                   "green: X better, red: Y better, grey: no significant difference", fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure
