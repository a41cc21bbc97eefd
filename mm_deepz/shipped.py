"""Where the models the project trained on simulator data and ships with the package are (docs/models.md);
found without loading torch."""

from __future__ import annotations

from pathlib import Path

#: Models trained by the project on simulator data and shipped with the package (docs/models.md).
SHIPPED_MODELS_DIR = Path(__file__).parent / "models"


def shipped_model_path(n_planes: int = 1) -> Path:
    """Path of the shipped demo model with 1 or 2 input planes."""
    if n_planes not in (1, 2):
        raise ValueError(f"Shipped models take 1 or 2 input planes, not {n_planes}.")
    return SHIPPED_MODELS_DIR / f"deepz_{n_planes}plane.pt"
