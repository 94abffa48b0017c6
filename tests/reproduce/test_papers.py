"""The transcribed published numbers and the checks that flag implausible ones."""

from __future__ import annotations

import pytest

from medsr.errors import ConfigError
from medsr.reproduce.papers import data_flags, load_paper, paper_flags, parse_paper
from medsr.reproduce.report import claim_verdict, derived, model_reductions
from medsr.reproduce.works import WORKS


@pytest.mark.parametrize("work", sorted(WORKS))
def test_every_work_has_published_numbers_naming_our_methods(work: int) -> None:
    paper = load_paper(work)
    spec = WORKS[work]
    ours = {m.name for m in spec.models}
    if spec.evaluation is not None:
        ours |= set(spec.evaluation.interpolations)
    else:
        ours.add("bicubic")
    for table in paper.tables:
        assert table.rows and table.columns
        for row in table.rows:
            assert row.ours in ours, (work, row.label, row.ours)
    for claim in paper.claims:
        named = {claim.better, *claim.than, *claim.methods} - {None}
        assert named <= ours, (work, claim.text)


def test_seed_1_ours_row_is_flagged_against_bicubic() -> None:
    flags = paper_flags(load_paper(1))
    texts = [f.text for f in flags]
    assert any(f.rows == ("Ours", "Bicubic") for f in flags)
    assert any("+4.45 dB" in t and "0.897" in t for t in texts)
    # the consistent rows are not flagged against each other
    assert not any(f.rows == ("RWMAN", "RCAN") for f in flags)


def test_negative_psnr_and_mse_beyond_the_range_are_flagged() -> None:
    texts = [f.text for f in paper_flags(load_paper(4))]
    assert any("negative" in t for t in texts)
    assert any("largest squared error" in t for t in texts)
    assert not any("ESPCN" in t for t in texts)
    assert any("Model 1 MSE" in f.text for f in paper_flags(load_paper(5)))


def test_rmse_below_mae_needs_our_ground_truth_mean() -> None:
    paper = load_paper(3)
    assert data_flags(paper, None) == []
    assert data_flags(paper, 0.9) == []  # a bright enough ground truth makes it possible
    flags = data_flags(paper, 0.05)
    assert len(flags) == 3 and "at least 0.275" in flags[0].text


def test_parse_paper_rejects_unknown_keys_and_columns() -> None:
    base = {
        "work": 9,
        "title": "t",
        "seed_file": "s.txt",
        "tables": [
            {
                "id": "a",
                "caption": "c",
                "reference": "r",
                "columns": [{"metric": "psnr", "label": "PSNR"}],
                "rows": [{"label": "x", "ours": "bicubic", "values": {"psnr": 30.0}}],
            }
        ],
    }
    assert parse_paper(base).tables[0].rows[0].values["psnr"].mean == 30.0
    with pytest.raises(ConfigError, match="unknown key"):
        parse_paper({**base, "extra": 1})
    bad = {
        **base,
        "tables": [{**base["tables"][0], "rows": [{"label": "x", "values": {"ssim": 1}}]}],
    }
    with pytest.raises(ConfigError, match="not columns"):
        parse_paper(bad)
    with pytest.raises(ConfigError, match="valid works"):
        load_paper(9)


def _rows(a: list[float], b: list[float], metric: str = "psnr") -> list[dict]:
    rows = []
    for method, values in (("A", a), ("B", b)):
        for k, v in enumerate(values):
            rows.append(
                {"method": method, "split": "test", "volume_id": "v", "slice_index": k, metric: v}
            )
    return rows


def test_claim_verdicts_follow_the_numbers() -> None:
    from medsr.reproduce.papers import Claim

    claim = Claim(where="T1", text="A beats B", metric="psnr", better="A", than=("B",))
    better = _rows([30.0 + k for k in range(8)], [29.0 + k for k in range(8)])
    assert "**holds**" in claim_verdict(claim, better, "test")
    worse = _rows([28.0 + k for k in range(8)], [29.0 + k for k in range(8)])
    assert "**does not hold**" in claim_verdict(claim, worse, "test")
    few = _rows([30.0, 31.0], [29.0, 30.0])
    assert "not everywhere significant" in claim_verdict(claim, few, "test")
    lower = Claim(where="T1", text="A has less MSE", metric="mse", better="A", than=("B",))
    assert "**holds**" in claim_verdict(
        lower, _rows(list(range(8)), [k + 5 for k in range(8)], "mse"), "test"
    )
    missing = Claim(where="T1", text="C beats B", metric="psnr", better="C", than=("B",))
    assert "cannot be tested" in claim_verdict(missing, better, "test")


def test_derived_columns() -> None:
    row = derived({"mae": 2.0, "data_range": 10.0, "mse": 9.0, "nrmse_mean_unit": 0.5})
    assert row["mae_unit"] == pytest.approx(0.2)
    assert row["gt_mean_unit"] == pytest.approx(3.0 / (10.0 * 0.5))


def test_model_reductions_name_each_change_with_its_ratio() -> None:
    full = {
        "data": {"patch_size": 96},
        "stages": [
            {
                "name": "gan",
                "steps": 1000,
                "losses": {"perceptual": {"weight": 1.0, "arch": "vgg16"}},
            }
        ],
    }
    small = {
        "data": {"patch_size": 48},
        "stages": [{"name": "gan", "steps": 100, "losses": {"perceptual": None}}],
    }
    lines = model_reductions(full, small)
    assert "`data.patch_size`: 96 -> 48 (x0.5)" in lines
    assert "`stages.gan.steps`: 1000 -> 100 (x0.1)" in lines
    assert "`stages.gan.losses.perceptual`: on -> off" in lines
    assert not any("perceptual.weight" in line for line in lines)
