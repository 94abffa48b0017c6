"""Prepared real-data subsets for the recipe smoke tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import realdata


@pytest.fixture(scope="session")
def prepared(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """``{"spine", "brats", "brats-256", "chest-xray"}`` -> prepared folders."""
    work = tmp_path_factory.mktemp("prepared")
    return {
        "spine": realdata.spine(shared_data, work),
        "brats": realdata.brats(shared_data, work),
        "brats-256": realdata.brats(shared_data, work, pad_to=256),
        "chest-xray": realdata.chest_xray(shared_data, work),
    }
