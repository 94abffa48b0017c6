"""Shared fixtures: where the real data lives, and skips when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MEDSR_SHARED_DATA); tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def pydicom_data_dir() -> Path | None:
    """Folder of the pydicom-data test files (installed with the dev extras), found offline.

    pydicom's own ``get_testdata_file`` may try to download missing files; we never call it.
    """
    try:
        import data_store  # the import name of the pydicom-data package
    except ImportError:
        return None
    folder = Path(data_store.__file__).parent / "data"
    return folder if folder.is_dir() else None


def pydicom_test_files_dir() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="session")
def dicom_file():
    """``dicom_file(name)``: path of a real DICOM test file from pydicom or pydicom-data."""

    def find(name: str) -> Path:
        for folder in (pydicom_test_files_dir(), pydicom_data_dir()):
            if folder is not None and (folder / name).is_file():
                return folder / name
        pytest.skip(f"DICOM test file {name} not found (install the dev extras: pydicom-data)")

    return find
