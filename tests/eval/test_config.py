from __future__ import annotations

from pathlib import Path

import pytest

from medsr.errors import ConfigError
from medsr.eval.config import load_config, parse_config, resolve_degradation

BASE = {
    "manifest": "data/prepared",
    "degradation": "bicubic_x4",
    "methods": [{"name": "bicubic", "model": "bicubic"}, {"name": "net", "model": "runs/x"}],
}


def _config(**kw):
    return parse_config({**BASE, **kw})


def test_defaults_and_full_schema() -> None:
    config = _config()
    assert config.reference == "bicubic" and config.splits == ("val",)
    assert config.degradation.scale == 4 and config.figures is not None
    full = _config(
        title="T",
        splits=["val", "test"],
        every=4,
        max_slices_per_volume=10,
        metrics=["psnr", "ssim", "mae", "vif", "nrmse_mean"],
        region_metrics=["psnr", "ssim"],
        regions=[
            {"name": "brain", "mask": "file"},
            {
                "name": "lesion",
                "mask": "zscore:2",
                "datasets": ["brain-mri-brats2013"],
                "volumes": "Flair",
                "min_pixels": 250,
            },
        ],
        tables=[
            {"style": "lumbar_spine", "datasets": ["spine-mri"]},
            {"style": "brats", "datasets": ["brain-mri-brats2013"], "volumes": "Flair"},
            {"style": "chest_xray"},
            {"style": "brain_tumour", "region": "lesion", "split": "val"},
        ],
        figures={"items": [{"volume_id": "a/b", "slice_index": 3, "inset": [0, 0, 32]}]},
        border=4,
    )
    assert [r.name for r in full.regions] == ["brain", "lesion"]
    assert full.regions[1].datasets == ("brain-mri-brats2013",)
    assert (full.regions[1].volumes, full.regions[1].min_pixels) == ("Flair", 250)
    assert full.tables[1].columns == ("ssim", "nrmse_mean_unit", "mae", "vif")
    assert full.figures.per_dataset == 0 and full.figures.items[0].inset == (0, 0, 32)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"manifets": "x"}, r"unknown key\(s\) 'manifets'; valid keys: title, description"),
        ({"methods": [{"name": "a", "model": "bicubic", "tiles": 3}]}, "valid keys: name, model"),
        ({"methods": []}, "non-empty list"),
        ({"methods": [{"name": "a", "model": "x"}, {"name": "a", "model": "y"}]}, "unique"),
        ({"reference": "lanczos"}, "not one of the methods"),
        ({"metrics": ["psnr", "sharpness"]}, "unknown metric"),
        ({"every": "4"}, "every must be an integer"),
        ({"splits": "val"}, "splits must be a list of strings"),
        ({"tables": [{"style": "spine"}]}, "is not one of lumbar_spine, brats"),
        ({"tables": [{"style": "brain_tumour"}]}, "needs a 'region'"),
        ({"tables": [{"style": "brain_tumour", "region": "x"}]}, "not one of the regions"),
        ({"tables": [{"style": "brats"}], "metrics": ["psnr", "ssim"]}, "needs metric"),
        ({"regions": [{"name": "a", "mask": "blob"}]}, "unknown region kind"),
        ({"regions": [{"name": "a", "mask": "file", "min_pixels": 0}]}, "min_pixels must be >= 1"),
        ({"figures": {"items": [{"volume_id": "a", "slice_index": 1, "inset": [1, 2]}]}}, "inset"),
        ({"figures": {"methods": ["lanczos"]}}, "not methods"),
        ({"degradation": "bicubic"}, "neither a YAML file nor NAME_xS"),
        ({"degradation": [{"name": "bicubic", "scael": 4}]}, "unknown key"),
    ],
)
def test_bad_configs_are_rejected_with_the_valid_choices(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(**change)


def test_missing_keys() -> None:
    with pytest.raises(ConfigError, match="missing required key 'degradation'"):
        parse_config({k: v for k, v in BASE.items() if k != "degradation"})
    with pytest.raises(ConfigError, match="missing required key 'manifest'"):
        parse_config({k: v for k, v in BASE.items() if k != "manifest"})


def test_degradation_forms(tmp_path: Path) -> None:
    assert resolve_degradation("bilinear_x2").to_config()[0]["name"] == "bilinear"
    assert resolve_degradation("bilinear_x2").scale == 2
    path = tmp_path / "d.yaml"
    path.write_text("- name: gaussian_blur\n  scale: 4\n")
    assert resolve_degradation(str(path)).to_config()[0]["name"] == "gaussian_blur"
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_degradation(str(tmp_path / "missing.yaml"))
    assert resolve_degradation([{"name": "bicubic", "scale": 3}]).scale == 3


def test_load_config_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(
        "manifest: x\ndegradation: bicubic_x4\nmethods: [{name: a, model: b}]\nfoo: 1\n"
    )
    with pytest.raises(ConfigError, match=r"b\.yaml: unknown key\(s\) 'foo'"):
        load_config(path)
    path.write_text("manifest: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
