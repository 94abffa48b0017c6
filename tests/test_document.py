"""The report document model: one p-value format and one escaping rule in Markdown and HTML."""

from __future__ import annotations

import math
import re

from medsr.document import (
    BulletList,
    Cell,
    Figure,
    Heading,
    Paragraph,
    Table,
    format_p,
    to_html,
    to_markdown,
)


def test_format_p() -> None:
    assert format_p(0.0123) == "0.012"
    assert format_p(0.001) == "0.001"
    assert format_p(0.000999) == "<0.001"
    assert format_p(3.2e-7) == "<0.001"
    assert format_p(1.0) == "1.000"
    assert format_p(math.nan) == "n/a"
    assert format_p(None) == "n/a"


def test_html_is_self_contained() -> None:
    png = b"\x89PNG fake"
    html = to_html(
        [
            Heading("Title", 1),
            Paragraph("a `code` span and **bold** <tag>"),
            Figure("figures/a.png", "alt", "caption", png=png),
        ],
        title="Report",
    )
    assert "<style>" in html and "<script" not in html
    assert not re.search(r"(src|href)=\"https?://", html)
    assert "data:image/png;base64," in html
    assert "<code>code</code>" in html and "<b>bold</b>" in html and "&lt;tag&gt;" in html
    linked = to_html([Figure("figures/a.png", "alt")], title="R")
    assert 'src="figures/a.png"' in linked
    md = to_markdown([Figure("figures/a.png", "alt", "cap")])
    assert "![alt](figures/a.png)" in md and "*cap*" in md


HOSTILE = "<script>alert(1)</script> | a & b\nnext **x**"


def test_cells_are_literal_text_in_both_outputs() -> None:
    table = Table(("Method", "<b>head</b>"), ((Cell(HOSTILE, numeric=False), Cell("1.0")),))
    md = to_markdown([table])
    html = to_html([table], title="t")
    for out in (md, html):
        assert "<script>" not in out and "&lt;script&gt;" in out
        assert "<b>head</b>" not in out and "&amp;" in out
    # Markdown: the pipe does not split the cell, the newline does not end the row
    row = md.splitlines()[2]
    assert row.startswith("| &lt;script&gt;") and "\\| a &amp; b next **x** |" in row
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt; | a &amp; b next **x**</td>" in html


def test_prose_keeps_its_inline_forms_and_escapes_the_rest() -> None:
    blocks = [
        Heading("Study <i>x</i>", 1),
        Paragraph("`a<b` and **bold** and [docs](docs/a.md) & <tag>"),
        BulletList(("item <x>",)),
    ]
    md = to_markdown(blocks)
    assert md.startswith("# Study &lt;i&gt;x&lt;/i&gt;\n")
    assert "`a<b` and **bold** and [docs](docs/a.md) &amp; &lt;tag&gt;" in md
    assert "- item &lt;x&gt;" in md
    html = to_html(blocks, title="<t>")
    assert "<title>&lt;t&gt;</title>" in html
    assert "<h1>Study &lt;i&gt;x&lt;/i&gt;</h1>" in html
    assert '<code>a&lt;b</code> and <b>bold</b> and <a href="docs/a.md">docs</a>' in html
    assert "<li>item &lt;x&gt;</li>" in html


def test_text_tables_align_left_and_numeric_cells_right() -> None:
    md = to_markdown(
        [
            Table.of_text(("Reader", "Comment"), [("r1", "fine")]),
            Table(("n",), ((Cell("3"),),)),
        ]
    )
    assert "| :--- | :--- |" in md and "| ---: |" in md
