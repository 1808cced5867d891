"""Shared figure style and atomic PNG + PDF output."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from effopd.io import atomic_path  # noqa: E402

# OPD's learning-rate baselines in lighter blues, in the order of their multipliers.
METHOD_COLORS = {"OPD": "#1f77b4", "EffOPD": "#d62728", "RL (GRPO)": "#2ca02c",
                 "OPD lr x2": "#6baed6", "OPD lr x4": "#9ecae1", "OPD lr x8": "#c6dbef"}


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save_figure(figure: plt.Figure, png_path: str | Path) -> tuple[Path, Path]:
    """Write ``figure`` as PNG (200 dpi) and as PDF beside it (reproducible bytes); close it."""
    png = Path(png_path)
    pdf = png.with_suffix(".pdf")
    figure.tight_layout()
    # No creation date in the PDF: a redrawn figure is byte-identical to the committed one.
    for target, kind, metadata in ((png, "png", {}), (pdf, "pdf", {"CreationDate": None})):
        with atomic_path(target, suffix=f".{kind}") as tmp:
            figure.savefig(tmp, format=kind, dpi=200, bbox_inches="tight", metadata=metadata)
    plt.close(figure)
    return png, pdf
