from __future__ import annotations

import pytest

from medsr import samples
from medsr.errors import ConfigError
from medsr.io import read


@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_every_sample_reads_with_its_modality(name):
    image = read(samples.path(name))
    info = samples.SAMPLES[name]
    assert image.array.size > 0
    assert info.license and info.description
    if info.modality in ("CT", "MR"):
        assert image.modality == info.modality


def test_samples_are_small_and_noticed():
    folder = samples.path("chest-ct").parent
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024
    notice = (folder / "NOTICE.md").read_text()
    for info in samples.SAMPLES.values():
        assert info.relative_path.split("/")[0] in notice


def test_unknown_sample():
    with pytest.raises(ConfigError, match="chest-ct"):
        samples.path("knee")
