"""The one document model of medsr's reports, rendered to Markdown and self-contained HTML.

The benchmark report (``medsr.eval``), the reader-study report (``medsr.study``) and the
reproduction report (``medsr.reproduce``) build a list of blocks (:class:`Heading`,
:class:`Paragraph`, :class:`BulletList`, :class:`Table`, :class:`Figure`) and render it
with :func:`to_markdown` / :func:`to_html`, so every report escapes text and formats
p-values the same way.

Escaping, one rule for both outputs:

* **Prose** (headings, paragraphs, list items, captions) is written by medsr and may use
  three inline forms: ```code```, ``**bold**`` and ``[text](url)``. Everything else in it
  is literal: ``&``, ``<`` and ``>`` become entities (in Markdown too, where renderers
  would pass raw tags through; not inside code spans, which Markdown shows as they are).
* **Table cells and headers** are data (method names, numbers, readers' free-text
  comments): literal text with no markup, ``&``, ``<``, ``>`` escaped, ``|`` escaped in
  Markdown, and runs of white space (newlines included) folded to one space.

p-values: :func:`format_p`.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Block",
    "BulletList",
    "Cell",
    "Figure",
    "Heading",
    "Paragraph",
    "Table",
    "format_p",
    "to_html",
    "to_markdown",
]


def format_p(p: float | None) -> str:
    """A p-value as reports show it: 3 decimals, ``<0.001`` below 0.001 (as medical journals
    print them: the tests' approximations say nothing finer), ``n/a`` when not computed."""
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# -- blocks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    """A heading of ``level`` 1 (the title) to 6; prose."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Prose with ``code``, **bold** and [link](url) spans."""

    text: str


@dataclass(frozen=True)
class BulletList:
    """Items of prose."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """Literal text; ``numeric`` cells are right-aligned (a column aligns as its first row)."""

    text: str
    bold: bool = False
    numeric: bool = True


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""

    @classmethod
    def of_text(
        cls, headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = ""
    ) -> Table:
        """A table of plain left-aligned text cells."""
        cells = tuple(tuple(Cell(str(text), numeric=False) for text in row) for row in rows)
        return cls(tuple(headers), cells, caption)


@dataclass(frozen=True)
class Figure:
    """An image file (``path`` relative to the report) with a caption; ``png`` is embedded in
    the HTML when given."""

    path: str
    alt: str
    caption: str = ""
    png: bytes | None = field(default=None, repr=False)


Block = Heading | Paragraph | BulletList | Table | Figure


# -- escaping -----------------------------------------------------------------------------------
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _md_prose(text: str) -> str:
    """Prose for Markdown: ``&<>`` escaped outside code spans; the inline forms kept."""
    parts = _CODE.split(text)  # odd indices: the contents of code spans
    return "".join(
        f"`{part}`" if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts)
    )


def _md_cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _html_prose(text: str) -> str:
    """Prose for HTML: escaped, then its `code`, **bold** and [links](url) turned into tags."""
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    return _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', escaped)


def _html_cell(text: str) -> str:
    return html.escape(" ".join(text.split()))


# -- Markdown -----------------------------------------------------------------------------------
def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; bold cells as ``**...**``, figures as image links."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + _md_prose(block.text))
        elif isinstance(block, Paragraph):
            out.append(_md_prose(block.text))
        elif isinstance(block, BulletList):
            out.append("\n".join(f"- {_md_prose(item)}" for item in block.items))
        elif isinstance(block, Table):
            out.append(_md_table(block))
        elif isinstance(block, Figure):
            text = f"![{_md_cell(block.alt)}]({block.path})"
            if block.caption:
                text += f"\n\n*{_md_prose(block.caption)}*"
            out.append(text)
    return "\n\n".join(out) + "\n"


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |"]
    aligns = ["---:" if c.numeric else ":---" for c in table.rows[0]] if table.rows else []
    lines.append("| " + " | ".join(aligns or ["---"] * len(table.headers)) + " |")
    for row in table.rows:
        cells = [f"**{_md_cell(c.text)}**" if c.bold and c.text else _md_cell(c.text) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    if table.caption:
        lines += ["", f"*{_md_prose(table.caption)}*"]
    return "\n".join(lines)


# -- HTML ---------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td { font-variant-numeric: tabular-nums; }
td.num { text-align: right; white-space: nowrap; }
caption { caption-side: bottom; font-style: italic; text-align: left; padding-top: 0.3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; font-size: 0.92em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def to_html(blocks: Sequence[Block], *, title: str) -> str:
    """One self-contained HTML page (inline CSS, no scripts; figures with ``png`` embedded as
    base64, others linked by path)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{_html_prose(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_prose(block.text)}</p>")
        elif isinstance(block, BulletList):
            items = "".join(f"<li>{_html_prose(i)}</li>" for i in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Figure):
            if block.png is not None:
                src = "data:image/png;base64," + base64.b64encode(block.png).decode("ascii")
            else:
                src = html.escape(block.path)
            caption = (
                f"<figcaption>{_html_prose(block.caption)}</figcaption>" if block.caption else ""
            )
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(block.alt)}">{caption}</figure>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{_html_prose(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{_html_cell(h)}</th>" for h in table.headers))
    parts.append("</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for c in row:
            text = _html_cell(c.text)
            if c.bold and c.text:
                text = f"<b>{text}</b>"
            cls = ' class="num"' if c.numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)
