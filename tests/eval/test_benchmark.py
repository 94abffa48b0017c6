from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image as PILImage

from medsr.errors import ConfigError
from medsr.eval.benchmark import run_benchmark
from medsr.eval.config import parse_config
from medsr.eval.methods import method_from_module
from medsr.eval.results import read_results
from medsr.models import build_generator


def _interp(name: str):
    return method_from_module(build_generator(name, {"scale": 4, "in_channels": 1}), name=name)


def _config(prepared: Path, **kw):
    data = {
        "title": "Tiny benchmark",
        "manifest": str(prepared),
        "degradation": "bicubic_x4",
        "splits": ["val", "test"],
        "methods": [
            {"name": "bicubic", "model": "bicubic"},
            {"name": "bilinear", "model": "bilinear"},
            {"name": "tiny", "model": "tiny"},
        ],
        "metrics": ["psnr", "ssim", "mae", "nrmse_mean", "vif"],
        "regions": [
            {"name": "brain", "mask": "brain"},
            {"name": "lesion", "mask": "zscore:1", "datasets": ["brain-mri"], "volumes": "Flair"},
        ],
        "region_metrics": ["psnr", "ssim"],
        "tables": [
            {"style": "lumbar_spine", "datasets": ["spine-mri"]},
            {"style": "brats", "datasets": ["brain-mri"]},
            {"style": "chest_xray", "datasets": ["spine-mri"]},
            {
                "style": "brain_tumour",
                "datasets": ["brain-mri"],
                "volumes": "Flair",
                "region": "lesion",
            },
        ],
        "figures": {"per_dataset": 1, "embed": False},
    }
    data.update(kw)
    return parse_config(data)


def test_benchmark_writes_tables_figures_and_resumes(prepared: Path, tmp_path: Path, tiny_net):
    methods = [_interp("bicubic"), _interp("bilinear"), method_from_module(tiny_net, name="tiny")]
    config = _config(prepared)
    out = run_benchmark(config, out=tmp_path / "bench", methods=methods)
    rows = read_results(out.results)
    assert len(rows) == len(out.rows) == 3 * 14
    md = out.markdown.read_text()
    html = out.html.read_text()
    for heading in (
        "## Results: val split",
        "## Results: test split",
        "### All datasets",
        "### spine-mri (MR)",
        "### brain-mri (MR)",
        "## Tables in the style of the source works",
        "## Regions",
        "### Region `lesion`",
        "## Runtime",
        "## Figures",
        "## Notes",
    ):
        assert heading in md, heading
    assert "chest-xray has no val, test split" in md
    assert "### Modality" not in md  # one modality only: the per-dataset tables say it all
    assert "Paired Wilcoxon signed-rank p-values against bicubic" in md
    assert "| SSIM ↑ | NRMSE (mean, [0, 1]) ↓ | MAE ↓ | VIF ↑ |" in md  # BraTS style
    assert "PSNR (dB) ↑ val | PSNR (dB) ↑ test" in md  # chest X-ray style
    assert "PSNR (dB) in lesion | PSNR (dB) outside lesion" in md  # brain tumour style
    # the pooled table leaves out the unit-bound metrics
    pooled = md.split("### All datasets")[1].split("###")[0]
    lesion_rows = [r for r in rows if r["lesion_fraction"] == r["lesion_fraction"]]
    assert lesion_rows and all("Flair" in r["volume_id"] for r in lesion_rows)
    assert "MAE ↓" not in pooled and "PSNR (dB) ↑" in pooled
    assert md.count("**") > 10  # bold best cells
    assert "<table>" in html and "<script" not in html
    assert len(out.figures) == 2  # spine and brain; the X-ray has no val image
    for path in out.figures:
        image = PILImage.open(io.BytesIO(path.read_bytes()))
        assert image.format == "PNG"
        assert f"figures/{path.name}" in md
    # a second run computes nothing and gives the same report numbers
    calls = []
    again = run_benchmark(
        config, out=tmp_path / "bench", methods=methods, progress=lambda d, t: calls.append(d)
    )
    assert calls == [] and len(again.rows) == len(rows)
    strip = re.compile(r"on \d{4}-\d\d-\d\d|Time per image.*|\| [\w.-]+ \| [\d.]+ \| [\d.]+ \|")
    assert strip.sub("", again.markdown.read_text()) == strip.sub("", md)


def test_report_only_and_embedded_figures(prepared: Path, tmp_path: Path) -> None:
    methods = [_interp("bicubic"), _interp("bilinear")]
    config = _config(
        prepared,
        methods=[
            {"name": "bicubic", "model": "bicubic"},
            {"name": "bilinear", "model": "bilinear"},
        ],
        tables=[],
        regions=[],
        splits=["val"],
        figures={
            "items": [{"volume_id": "spine-mri/VB1_01", "slice_index": 2, "inset": [8, 8, 16]}]
        },
    )
    with pytest.raises(ConfigError, match="run the benchmark first"):
        run_benchmark(config, out=tmp_path / "b", methods=methods, evaluate=False)
    run_benchmark(config, out=tmp_path / "b", methods=methods, figures=False)
    out = run_benchmark(config, out=tmp_path / "b", methods=methods, evaluate=False)
    html = out.html.read_text()
    assert html.count("data:image/png;base64,") == 1
    assert "(top 8, left 8), chosen in the config" in out.markdown.read_text()
    bad = _config(
        prepared,
        methods=[{"name": "bicubic", "model": "bicubic"}],
        figures={"items": [{"volume_id": "spine-mri/VB1_01", "slice_index": 99}]},
    )
    with pytest.raises(ConfigError, match="not among the evaluated slices"):
        run_benchmark(bad, out=tmp_path / "c", methods=methods[:1])


def test_report_breaks_down_by_modality_when_one_spans_datasets() -> None:
    from medsr.document import to_markdown
    from medsr.eval.report import MethodInfo, build_report

    config = parse_config(
        {
            "manifest": "m",
            "degradation": "bicubic_x4",
            "methods": [{"name": "bicubic", "model": "bicubic"}, {"name": "x", "model": "x"}],
            "metrics": ["psnr", "mae"],
        }
    )
    rows = []
    for dataset, modality in (("spine", "MR"), ("brain", "MR"), ("ct", "CT")):
        for i in range(4):
            for method, psnr in (("bicubic", 30.0 + i), ("x", 31.0 + i * 1.1)):
                rows.append(
                    {
                        "method": method,
                        "split": "val",
                        "dataset": dataset,
                        "modality": modality,
                        "subject_id": dataset,
                        "volume_id": f"{dataset}/v",
                        "slice_index": i,
                        "height": 8,
                        "width": 8,
                        "psnr": psnr,
                        "mae": 1.0,
                        "consistency_psnr": 40.0,
                        "runtime_s": 0.1,
                    }
                )
    blocks = build_report(
        rows,
        config,
        methods=[MethodInfo("bicubic", "bicubic", "", False), MethodInfo("x", "x", "", True)],
        settings={"degradation": []},
        missing_splits={},
    )
    md = to_markdown(blocks)
    assert "### Modality MR (brain, spine)" in md and "### Modality CT" not in md


def test_table_captions_name_the_slice_subset() -> None:
    from medsr.document import to_markdown
    from medsr.eval.report import MethodInfo, build_report

    rows = [
        {
            "method": method,
            "split": "val",
            "dataset": "spine",
            "modality": "MR",
            "subject_id": "s",
            "volume_id": "spine/v",
            "slice_index": i,
            "height": 8,
            "width": 8,
            "psnr": 30.0 + i + (method == "x"),
            "consistency_psnr": 40.0,
            "runtime_s": 0.1,
        }
        for i in range(3)
        for method in ("bicubic", "x")
    ]
    methods = [MethodInfo("bicubic", "bicubic", "", False), MethodInfo("x", "x", "", True)]
    base = {
        "manifest": "m",
        "degradation": "bicubic_x4",
        "methods": [{"name": "bicubic", "model": "bicubic"}, {"name": "x", "model": "x"}],
        "metrics": ["psnr"],
        "tables": [{"style": "lumbar_spine", "metrics": ["psnr"]}],
    }

    def captions(**kw) -> list[str]:
        blocks = build_report(
            rows,
            parse_config({**base, **kw}),
            methods=methods,
            settings={"degradation": []},
            missing_splits={},
        )
        md = to_markdown(blocks)
        return [line for line in md.splitlines() if line.startswith("*Mean ± std")]

    subset = "Images: every 2nd kept slice of each volume (from slice 1), at most 5 per volume."
    selected = captions(every=2, max_slices_per_volume=5)
    assert len(selected) == 2 and all(c.endswith(subset + "*") for c in selected)
    assert "every 12th kept slice" in captions(every=12)[0]
    assert not any("Images:" in c for c in captions())
