"""A report rendered as JSON, CSV, HTML or PDF: the same blocks in every format."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
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
            writer.writerow({"section": section, **{f: row[f] for f in fields}, **common})
    return out.getvalue()


_CSS = """body{font-family:sans-serif;font-size:12px;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}
th{background:#eee}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;word-break:break-all}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:11px;color:#555}"""


def to_html(report: Report) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>fairwatch audit report</title>", f"<style>{_CSS}</style></head><body>"]
    for block in report.blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(block[1])}</p>")
        elif kind == "code":
            parts.append(f"<pre>{e(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in block[1]) if any(block[1]) else ""
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(block[1]).decode()
            parts.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(block[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def to_pdf(report: Report) -> bytes:
    """A4 PDF of the same blocks as the HTML (fpdf2, with matplotlib's DejaVu fonts for any label)."""
    import matplotlib
    from fpdf import FPDF
    from fpdf.fonts import FontFace

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
        elif kind == "p":
            pdf.set_font("dejavu", "", 8)
            pdf.multi_cell(width, 4, block[1], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "code":
            pdf.set_font("dejavumono", "", 6)
            pdf.multi_cell(width, 3, block[1], new_x="LMARGIN", new_y="NEXT", fill=False)
            pdf.ln(1)
        elif kind == "table":
            head, rows = block[1], block[2]
            if not rows:
                continue
            pdf.set_font("dejavu", "", 6.5 if len(head) > 8 else 7.5)
            with pdf.table(width=width, line_height=3.4, first_row_as_headings=any(head),
                           headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235))) as table:
                if any(head):
                    table.row([str(h) for h in head])
                for r in rows:
                    table.row([str(c) for c in r])
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
