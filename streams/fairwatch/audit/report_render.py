"""A report rendered as JSON, CSV, HTML or PDF: the same blocks in every format."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from pathlib import Path

from fairwatch.audit.estimates import CORRECTED_FIELDS, DIFFERENTIAL_FIELDS, GROUP_FIELDS, HOMOGENEITY_FIELDS
from fairwatch.audit.report import Report
from fairwatch.audit.report_figures import PNG_DPI

FORMATS = ("html", "pdf", "json", "csv")


def to_json(report: Report) -> str:
    return json.dumps(report.document, indent=1, allow_nan=False) + "\n"


_SECTIONS = (("group", "groups", GROUP_FIELDS), ("differential", "differentials", DIFFERENTIAL_FIELDS),
             ("homogeneity", "homogeneity", HOMOGENEITY_FIELDS), ("corrected", "corrected", CORRECTED_FIELDS))
CSV_FIELDS = ("section", *dict.fromkeys(f for _, _, fields in _SECTIONS for f in fields),
              "window_from", "window_to", "metrics_sha256")


def to_csv(report: Report) -> str:
    """The per-group rows, the differential rows, the homogeneity tests and the rates allowing for
    reviewer error, one header, a ``section`` column."""
    doc = report.document
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    common = {"window_from": doc["scope"]["window"]["from"], "window_to": doc["scope"]["window"]["to"],
              "metrics_sha256": doc["reproducibility"]["metrics_sha256"]}
    for section, key, fields in _SECTIONS:
        for row in doc[key]:
            writer.writerow({"section": section, **{f: inert_cell(row[f]) for f in fields}, **common})
    return out.getvalue()


def inert_cell(value: object) -> object:
    r"""A CSV cell a spreadsheet will not run: text starting with ``= + - @`` (or a tab or carriage
    return) gets a leading ``'`` (OWASP's CSV injection advice); numbers stay numbers.

    >>> inert_cell('=HYPERLINK("http://x","y")'), inert_cell("-0.5"), inert_cell(-0.5), inert_cell("race")
    ('\'=HYPERLINK("http://x","y")', '-0.5', -0.5, 'race')
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


# print: A4 like the PDF, the findings alone on the first page; intervals never break inside
_CSS = """body{font-family:sans-serif;font-size:12px;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}
th{background:#eee}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;word-break:break-all}
figure{margin:1em 0;break-inside:avoid}img{max-width:100%}figcaption{font-size:11px;color:#555}
.n{white-space:nowrap}
td.worse{background:#fadbd8;color:#922b21;font-weight:bold}td.warn{background:#fdebd0}
td.better{background:#d6eaf8}td.muted{color:#888}li{margin:.25em 0}
.pagebreak{break-after:page}
@page{size:A4;margin:12mm}
@media print{body{max-width:none;margin:0;font-size:9px}td,th{padding:1px 3px}}"""


# what a line must never break inside: an interval ("0.0349 [0.0316, 0.0386]"), a time, a range
_KEEP = re.compile(r"[^\s\[]+ \[[^\]]*\]\S*|\S*[-:]\S*")


def _cell_html(text: str) -> str:
    out, last = [], 0
    for match in _KEEP.finditer(text):
        out += [html.escape(text[last:match.start()]), f'<span class="n">{html.escape(match.group())}</span>']
        last = match.end()
    return "".join(out) + html.escape(text[last:])


def _td(cell) -> str:
    """A cell that wraps only between the pieces :data:`_KEEP` keeps whole; a newline is a line break."""
    tone = getattr(cell, "tone", None)
    text = "<br>".join(_cell_html(line) for line in str(cell).split("\n"))
    return f'<td class="{tone}">{text}</td>' if tone else f"<td>{text}</td>"


def to_html(report: Report) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(report.document.get('report', 'fairwatch audit report'))}</title>", f"<style>{_CSS}</style></head><body>"]
    listing = False
    for block in report.blocks:
        kind = block[0]
        if listing and kind != "li":
            parts.append("</ul>")
            listing = False
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(block[1])}</p>")
        elif kind == "li":
            if not listing:
                parts.append("<ul>")
                listing = True
            parts.append(f"<li>{e(block[1])}</li>")
        elif kind == "code":
            parts.append(f"<pre>{e(block[1])}</pre>")
        elif kind == "pagebreak":
            parts.append('<div class="pagebreak"></div>')
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in block[1]) if any(block[1]) else ""
            rows = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(block[1]).decode()
            parts.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(block[2])}</figcaption></figure>")
    if listing:
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_TONES_PDF = {"worse": ((146, 43, 33), (250, 219, 216), "B"), "warn": (None, (253, 235, 208), ""),
              "better": (None, (214, 234, 248), ""), "muted": ((136, 136, 136), None, "")}
PAD = 0.8  # mm left and right of a PDF table cell
UNBREAKABLE = 40  # cells up to this many characters (an interval, a group) never wrap in the PDF


def _text_width(pdf, text: str, bold: bool) -> float:
    size = pdf.font_size_pt
    pdf.set_font("dejavu", "B" if bold else "", size)
    found = pdf.get_string_width(text)
    pdf.set_font("dejavu", "", size)
    return found


def _column_widths(pdf, head: list, rows: list, width: float) -> list[float] | None:
    """Widths (mm) that keep every short cell on one line (bold where it is drawn bold), giving
    what is left to the long ones; None when even the short cells do not fit at this font size."""
    natural, least = [], []
    for i in range(len(head)):
        cells = [(str(head[i]), True)] + [(str(r[i]), _TONES_PDF.get(getattr(r[i], "tone", None), (None, None, ""))[2] == "B")
                                          for r in rows]
        natural.append(max(_text_width(pdf, line, bold) for t, bold in cells for line in t.split("\n")) + 2 * PAD + 0.6)
        # a heading may wrap at its spaces, a long cell too, never inside a word; a short cell never
        keep = [max(_text_width(pdf, line, bold) for line in t.split("\n")) if max(map(len, t.split("\n"))) <= UNBREAKABLE and j else
                max(_text_width(pdf, w, bold) for w in t.split() or [""]) for j, (t, bold) in enumerate(cells)]
        least.append(max(keep) + 2 * PAD + 0.6)
    if sum(natural) <= width:
        return natural
    if sum(least) > width:
        return None
    spare, wanted = width - sum(least), [n - m for n, m in zip(natural, least)]
    return [m + spare * w / sum(wanted) for m, w in zip(least, wanted)]


def _pdf_table(pdf, head: list, rows: list, width: float) -> None:
    from fpdf.fonts import FontFace

    size = 7.5 if len(head) <= 6 else 6.5
    widths = None
    while widths is None and size >= 5:
        pdf.set_font("dejavu", "", size)
        widths = _column_widths(pdf, head, rows, width)
        size -= 0.5
    pdf.set_font("dejavu", "", size + 0.5)
    # the shares of the spare width can sum to a hair over the page (float rounding): fpdf refuses that
    with pdf.table(width=min(sum(widths), width) if widths else width, col_widths=widths, align="LEFT", text_align="LEFT",
                   line_height=pdf.font_size * 1.35, padding=(0.3, PAD), first_row_as_headings=any(head),
                   headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235))) as table:
        if any(head):
            table.row([str(h) for h in head])
        for r in rows:
            row = table.row()
            for c in r:
                tone = getattr(c, "tone", None)
                if tone:
                    color, fill, emphasis = _TONES_PDF[tone]
                    row.cell(str(c), style=FontFace(emphasis=emphasis or None, color=color, fill_color=fill))
                else:
                    row.cell(str(c))


def to_pdf(report: Report) -> bytes:
    """A4 PDF of the same blocks as the HTML (fpdf2, with matplotlib's DejaVu fonts for any label)."""
    import matplotlib
    from fpdf import FPDF

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.add_font("dejavu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("dejavu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_font("dejavumono", "", str(fonts / "DejaVuSansMono.ttf"))
    pdf.set_auto_page_break(True, margin=12)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for block in report.blocks:
        kind = block[0]
        if kind == "h1":
            pdf.set_font("dejavu", "B", 15)
            pdf.multi_cell(width, 8, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "h2":
            pdf.ln(2)
            pdf.set_font("dejavu", "B", 11)
            pdf.multi_cell(width, 6, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "h3":
            pdf.ln(1)
            pdf.set_font("dejavu", "B", 9)
            pdf.multi_cell(width, 5, block[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "p":
            pdf.set_font("dejavu", "", 8)
            pdf.multi_cell(width, 4, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "li":
            pdf.set_font("dejavu", "", 8)
            pdf.cell(4, 4, "\u2022")
            pdf.multi_cell(width - 4, 4, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(0.8)
        elif kind == "pagebreak":
            pdf.add_page()
        elif kind == "code":
            pdf.set_font("dejavumono", "", 6)
            pdf.multi_cell(width, 3, block[1], new_x="LMARGIN", new_y="NEXT", fill=False)
            pdf.ln(1)
        elif kind == "table":
            if block[2]:
                _pdf_table(pdf, block[1], block[2], width)
                pdf.ln(2)
        elif kind == "img":
            from PIL import Image

            image = Image.open(io.BytesIO(block[1]))
            w_mm = min(width, image.width / PNG_DPI * 25.4)
            h_mm = w_mm * image.height / image.width
            if pdf.get_y() + h_mm + 10 > pdf.h - pdf.b_margin:
                pdf.add_page()
            pdf.image(io.BytesIO(block[1]), w=w_mm, h=h_mm)
            pdf.set_font("dejavu", "", 7)
            pdf.multi_cell(width, 3.5, block[2], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    return bytes(pdf.output())


def render(report: Report, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "pdf":
        return to_pdf(report)
    return {"html": to_html, "json": to_json, "csv": to_csv}[fmt](report).encode()
