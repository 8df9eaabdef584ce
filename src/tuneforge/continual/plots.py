"""The accuracy matrix as a text table and as a heatmap picture (PNG with matplotlib, else an SVG written here)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any


def format_table(report: dict[str, Any]) -> str:
    """R[i][j] with one row per stage trained, then the scores.

    >>> print(format_table({"stages": ["a", "b"], "R": [[0.9, 0.5], [0.7, 0.8]], "strategy": "naive",
    ...                     "average_accuracy": 0.75, "forgetting": 0.2, "backward_transfer": -0.2,
    ...                     "forward_transfer": 0.0}).splitlines()[1])
    after a            0.900    0.500
    """
    names = report["stages"]
    width = max(8, *(len(n) for n in names)) + 1
    lines = [" " * (width + 6) + "".join(f"{n[:width - 1]:>{width}}" for n in names)]
    for name, row in zip(names, report["R"]):
        lines.append(f"after {name:<{width}}" + "".join(f"{v:>{width}.3f}" for v in row))
    lines.append(f"strategy {report['strategy']}: average accuracy {report['average_accuracy']:.4f}, forgetting "
                 f"{report['forgetting']:.4f}, backward transfer {report['backward_transfer']:+.4f}, forward "
                 f"transfer {report['forward_transfer']:+.4f}")
    return "\n".join(lines)


def write_heatmap(report: dict[str, Any], stem: Path) -> Path:
    """``stem``.png when matplotlib is installed, else ``stem``.svg."""
    try:
        import matplotlib
    except ImportError:
        return _write_svg(report, stem.with_suffix(".svg"))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tuneforge.io_utils import atomic_path

    names, r = report["stages"], report["R"]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.5))
    im = ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(r)), [f"after {n}" for n in names[: len(r)]])
    ax.set_xlabel("test split of stage")
    for i, row in enumerate(r):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=9)
    ax.set_title(f"{report['strategy']} ({report['scenario']}): avg acc {report['average_accuracy']:.3f}, "
                 f"forgetting {report['forgetting']:.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = stem.with_suffix(".png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _write_svg(report: dict[str, Any], path: Path) -> Path:
    """A plain SVG grid: written by hand so the picture exists without matplotlib."""
    from tuneforge.io_utils import atomic_write_text

    names, r, cell, left, top = report["stages"], report["R"], 60, 160, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + cell * len(names) + 10}" '
             f'height="{top + cell * len(r) + 10}" font-family="sans-serif" font-size="12">']
    for j, n in enumerate(names):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 8}" text-anchor="middle">{escape(n)}</text>')
    for i, row in enumerate(r):
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end">after '
                     f'{escape(names[i])}</text>')
        for j, v in enumerate(row):
            shade = int(255 * (1 - v))
            parts.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade},255)"/><text x="{left + j * cell + cell / 2}" '
                         f'y="{top + i * cell + cell / 2 + 4}" text-anchor="middle">{v:.2f}</text>')
    parts.append("</svg>")
    atomic_write_text(path, "\n".join(parts))
    return path
