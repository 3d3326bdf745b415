"""The one way Vitrina writes a matplotlib figure: laid out, saved (folder created), closed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files (the Agg backend: no display on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Tight layout, PNG at `dpi`, figure closed (pyplot keeps every open figure otherwise)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
