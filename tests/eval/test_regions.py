from __future__ import annotations

import numpy as np
import pytest

from medsr.errors import ConfigError
from medsr.eval.regions import Region, VolumeStats, parse_region


def test_parse_region_kinds_names_and_bounds() -> None:
    assert parse_region("brain") == Region("brain", "file")
    assert parse_region("file") == Region("file", "file")
    assert parse_region("tissue=mask") == Region("tissue", "file")
    assert parse_region("threshold:-500,") == Region("threshold", "threshold", low=-500.0)
    assert parse_region("bone=threshold:,1300") == Region("bone", "threshold", high=1300.0)
    assert parse_region("lesion=zscore:2.5") == Region("lesion", "zscore", z=2.5)
    region = parse_region("lesion=zscore:2.5")
    assert parse_region(region.spec()) == region


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tumour", "unknown region kind 'tumour'"),
        ("threshold:5", "threshold:LOW,HIGH"),
        ("threshold:,", "LOW, HIGH or both"),
        ("threshold:9,1", "LOW <= HIGH"),
        ("zscore:", "zscore:Z"),
        ("zscore:abc", "not a number"),
        ("brain:3", "takes no arguments"),
        ("9bad=brain", "must start with a letter"),
    ],
)
def test_parse_region_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_region(text)


def test_region_masks() -> None:
    hr = np.array([[100.0, 1.0], [5.0, 10.0]])  # [0, 0] is bright but outside the brain
    brain = np.array([[False, True], [True, True]])
    assert parse_region("threshold:1,5").mask(hr, None, None).tolist() == [
        [False, True],
        [True, False],
    ]
    assert parse_region("brain").mask(hr, brain, None).tolist() == brain.tolist()
    assert parse_region("brain").mask(hr, None, None) is None  # no attached mask: NaN row
    lesion = parse_region("zscore:2").mask(hr, brain, VolumeStats(mean=1.0, std=2.0))
    assert lesion.tolist() == [[False, False], [False, True]]  # > 1 + 2 * 2, in the brain
    flat = parse_region("zscore:2").mask(hr, brain, VolumeStats(mean=1.0, std=0.0))
    assert not flat.any()
    only_ct = Region("body", "threshold", low=-500.0, datasets=("chest-ct",))
    assert only_ct.applies_to("chest-ct") and not only_ct.applies_to("spine-mri")
    flair = parse_region("lesion=zscore:2", volumes="Flair")
    assert flair.applies_to("brats", "brats/pat0003/Flair_x")
    assert not flair.applies_to("brats", "brats/pat0003/T1c_x")
    with pytest.raises(ConfigError, match="volumes"):
        parse_region("brain", volumes="(")
