"""A PNG a radiologist can look at: the mammogram with the model's marks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from common.imaging.reading import Mammogram  # noqa: E402
from common.learning.inference import ImageResult  # noqa: E402


def draw_overlay(image: Mammogram, result: ImageResult, path: Path) -> Path:
    """Draw the marks: their calcifications (small circles), boxes coloured by malignancy.

    Clusters below the cascade's operating point are not drawn (they stay in the JSON).
    """
    h, w = image.pixels.shape
    fig, ax = plt.subplots(figsize=(6, 6 * h / w))
    ax.imshow(image.pixels, cmap="gray", vmin=0, vmax=1)
    points = result.marked_points()
    if len(points):
        ax.scatter(
            points[:, 1],
            points[:, 0],
            s=12,
            facecolors="none",
            edgecolors="yellow",
            linewidths=0.6,
        )
    cmap = plt.get_cmap("RdYlGn_r")
    for c in result.marks:
        r0, c0, r1, c1 = c.box
        pad = 10
        colour = cmap(c.malignancy or 0.0)
        ax.add_patch(
            Rectangle(
                (c0 - pad, r0 - pad),
                c1 - c0 + 2 * pad,
                r1 - r0 + 2 * pad,
                fill=False,
                edgecolor=colour,
                linewidth=1.5,
            )
        )
        ax.text(
            c0 - pad,
            r0 - pad - 4,
            f"malignant {100 * (c.malignancy or 0):.0f}%",
            color=colour,
            fontsize=8,
            weight="bold",
        )
    lat = image.laterality or "?"
    hidden = len(result.clusters) - len(result.marks)
    below = f", {hidden} cluster(s) below the operating point" if hidden else ""
    ax.set_title(f"{lat} {image.view or ''} — image score {result.score:.2f}{below}", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
