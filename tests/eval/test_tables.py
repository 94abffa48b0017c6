from __future__ import annotations

import math

from medsr.document import format_p, to_html, to_markdown
from medsr.eval.tables import (
    column_label,
    direction,
    format_number,
    pvalue_table,
    region_table,
    results_table,
    split_table,
    summarise,
)


def _rows(values: dict[str, list[tuple[float, float]]], split: str = "val") -> list[dict]:
    """Rows with psnr and mae per method for images 0..n-1."""
    rows = []
    for method, pairs in values.items():
        for i, (psnr, mae) in enumerate(pairs):
            rows.append(
                {
                    "method": method,
                    "split": split,
                    "volume_id": "v",
                    "slice_index": i,
                    "psnr": psnr,
                    "mae": mae,
                    "r_ssim_inside": psnr / 100,
                    "r_ssim_outside": psnr / 50,
                    "r_ssim_difference": -psnr / 100,
                }
            )
    return rows


ROWS = _rows(
    {
        "bicubic": [(30.0, 5.0), (31.0, 4.0), (32.0, 6.0), (29.0, 5.5), (30.5, 5.0), (31.5, 4.5)],
        "net": [(32.0, 6.0), (33.0, 5.0), (33.5, 7.0), (31.0, 6.5), (32.5, 6.0), (33.0, 5.5)],
        "nearest": [(28.0, 3.0), (29.0, 2.0), (30.0, 4.0), (27.0, 3.5), (28.5, 3.0), (29.5, 2.5)],
    }
)


def test_direction_follows_the_metric_table_and_region_columns() -> None:
    assert direction("psnr") == "higher"
    assert direction("mae") == "lower"
    assert direction("consistency_psnr") == "higher"
    assert direction("runtime_s") == "lower"
    assert direction("lesion_ms_ssim_inside") == "higher"
    assert direction("brain_nrmse_mean_outside") == "lower"
    assert direction("brain_ssim_difference") is None
    assert direction("brain_fraction") is None
    assert column_label("psnr") == "PSNR (dB) ↑"
    assert column_label("brain_mae_inside") == "MAE inside ↓"


def test_bold_best_respects_higher_and_lower_is_better() -> None:
    summary = summarise(ROWS, methods=["bicubic", "net", "nearest"], columns=["psnr", "mae"])
    assert summary.best("psnr") == {"net"}
    assert summary.best("mae") == {"nearest"}
    table = results_table(summary)
    cells = {row[0].text: row for row in table.rows}
    assert cells["net"][2].bold and not cells["net"][3].bold
    assert cells["nearest"][3].bold and not cells["nearest"][2].bold
    assert not any(c.bold for c in cells["bicubic"][2:])
    md = to_markdown([table])
    net_line = next(line for line in md.splitlines() if line.startswith("| net"))
    assert "**32.50 ± 0.89**" in net_line  # mean and sample std of the net's PSNR
    html = to_html([table], title="t")
    assert "<b>32.50 ± 0.89</b>" in html


def test_ties_at_the_displayed_precision_are_all_bold() -> None:
    rows = _rows({"a": [(30.001, 1.0), (30.001, 1.0)], "b": [(30.004, 2.0), (30.002, 2.0)]})
    summary = summarise(rows, methods=["a", "b"], columns=["psnr"])
    assert summary.best("psnr") == {"a", "b"}  # 30.00 and 30.00 at 2 decimals


def test_no_bold_for_a_negative_error() -> None:
    rows = _rows({"a": [(30.0, -0.1), (31.0, -0.2)], "b": [(29.0, -0.3), (30.0, -0.4)]})
    summary = summarise(rows, methods=["a", "b"], columns=["mae"])
    assert summary.best("mae") == set()


def test_no_bold_for_differences_or_a_single_method() -> None:
    summary = summarise(ROWS, methods=["bicubic", "net"], columns=["r_ssim_difference"])
    assert summary.best("r_ssim_difference") == set()
    single = summarise(ROWS, methods=["net"], columns=["psnr"])
    assert single.best("psnr") == set()


def test_pvalues_against_the_reference_are_paired_wilcoxon() -> None:
    summary = summarise(
        ROWS, methods=["bicubic", "net", "nearest"], columns=["psnr"], reference="bicubic"
    )
    test = summary.cell("net", "psnr").test
    # net - bicubic: 2, 2, 1.5, 2, 2, 1.5 (all positive, ties): normal approximation
    assert test is not None and test.n == 6 and test.n_nonzero == 6
    assert 0 < test.p_value < 0.05
    assert summary.cell("bicubic", "psnr").test is None
    table = pvalue_table(summary)
    texts = {row[0].text: [c.text for c in row] for row in table.rows}
    assert texts["bicubic"][2] == "reference"
    assert texts["net"][1] == "6"
    assert texts["net"][2] == format_p(test.p_value)


def test_mean_std_share_the_decimals_of_the_mean() -> None:
    rows = _rows({"a": [(30.0, 48.4), (31.0, 49.2)]})
    table = results_table(summarise(rows, methods=["a"], columns=["mae"]))
    assert table.rows[0][2].text == "48.80 ± 0.57"
    small = _rows({"a": [(30.0, 0.01234), (31.0, 0.01334)]})
    table = results_table(summarise(small, methods=["a"], columns=["mae"]))
    assert table.rows[0][2].text == "0.01284 ± 0.00071"


def test_format_number_and_p() -> None:
    assert format_number(31.234, "psnr") == "31.23"
    assert format_number(0.912345, "ssim") == "0.9123"
    assert format_number(0.912345, "brain_ssim_inside") == "0.9123"
    assert format_number(123.456, "mae") == "123.5"
    assert format_number(math.nan, "psnr") == "n/a"
    assert format_number(math.inf, "psnr") == "inf"


def test_split_table_has_one_column_per_metric_and_split() -> None:
    rows = ROWS + _rows({"bicubic": [(25.0, 1.0)], "net": [(26.0, 1.0)]}, split="test")
    summaries = {
        split: summarise(
            [r for r in rows if r["split"] == split], methods=["bicubic", "net"], columns=["psnr"]
        )
        for split in ("val", "test")
    }
    table = split_table(summaries, ["psnr"])
    assert table.headers == ("Method", "PSNR (dB) ↑ val", "PSNR (dB) ↑ test")
    net = next(r for r in table.rows if r[0].text == "net")
    assert net[1].text == "32.50 ± 0.89" and net[1].bold
    assert net[2].text == "26.00" and net[2].bold  # one image: no std


def test_region_table_inside_outside_difference() -> None:
    summary = summarise(
        ROWS,
        methods=["bicubic", "net"],
        columns=["r_ssim_inside", "r_ssim_outside", "r_ssim_difference"],
    )
    table = region_table(summary, "r", ["ssim"], inside_label="in lesion", outside_label="normal")
    assert table.headers == (
        "Method",
        "n",
        "SSIM in lesion",
        "SSIM normal",
        "SSIM in lesion − normal",
    )
    net = next(r for r in table.rows if r[0].text == "net")
    assert net[2].bold and net[3].bold and not net[4].bold
