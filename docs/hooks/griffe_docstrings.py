"""A griffe extension (mkdocstrings-python ``extensions:``): two numpy-docstring habits of this
code base, made to render as meant instead of warning in ``mkdocs build --strict``.

* A doctest (``>>>`` lines) in running text, outside an ``Examples`` section, is fenced as a
  ``pycon`` code block; unfenced, Markdown reads ``s["a"]["b"]`` as a reference link.
* Prose after the last item of a ``Parameters`` section, at the section's indentation and after
  a blank line, would be read as more parameters (numpy sections end only at the next header):
  it gets a ``Notes`` header, which is where numpydoc puts such text.

Only the rendered text changes; the source docstrings are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ITEM_SECTIONS = {"parameters", "params", "other parameters", "other params"}
EXAMPLE_SECTIONS = {"examples", "example"}
# a numpy parameter header: "name", "name : type", "*args", "a, b : int"
PARAMETER = re.compile(r"^\*{0,2}[A-Za-z_]\w*(\s*,\s*\*{0,2}[A-Za-z_]\w*)*(\s+:(\s.*)?)?$")


def _is_header(lines: list[str], i: int) -> bool:
    return (i + 1 < len(lines) and lines[i].strip() != "" and not lines[i].startswith(" ")
            and re.fullmatch(r"-{3,}", lines[i + 1].strip() or "x") is not None)


def rewrite(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    section = ""
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            fenced = not fenced
        if not fenced and _is_header(lines, i):
            section = line.strip().lower()
            out += [line, lines[i + 1]]
            i += 2
            continue
        if (not fenced and section in ITEM_SECTIONS and line and not line.startswith(" ")
                and i > 0 and lines[i - 1].strip() == "" and not PARAMETER.match(line)):
            out += ["Notes", "-----"]
            section = "notes"
        if not fenced and section not in EXAMPLE_SECTIONS and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class NumpyDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.docstring.value:
            new = rewrite(obj.docstring.value)
            if new != obj.docstring.value:
                obj.docstring.value = new
