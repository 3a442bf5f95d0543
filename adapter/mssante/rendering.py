"""A page to read the letter in any mail software or browser: its title, the patient, and each
section's title and narrative as text (no script, no style from the document, nothing fetched)."""

from __future__ import annotations

import html

from lxml import etree

from adapter.cda.datatypes import child, children, text_of
from adapter.cda.reader import parse_letter

_BLOCKS = frozenset({"paragraph", "item", "tr", "br", "caption", "content"})


def readable_letter(letter: bytes, *, max_bytes: int) -> str:
    root = parse_letter(letter, max_bytes=max_bytes)
    title = text_of(child(root, "title")) or "Lettre de liaison"
    parts = [f"<!DOCTYPE html><html lang=\"fr\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"]
    body = child(child(root, "component"), "structuredBody")
    for component in children(body, "component"):
        parts.extend(_section(child(component, "section"), level=2))
    parts.append("</body></html>")
    return "".join(parts)


def _section(section: etree._Element | None, level: int) -> list[str]:
    if section is None:
        return []
    out = []
    heading = text_of(child(section, "title"))
    if heading:
        out.append(f"<h{min(level, 6)}>{html.escape(heading)}</h{min(level, 6)}>")
    lines = _lines(child(section, "text"))
    if lines:
        out.append("<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>")
    for component in children(section, "component"):
        out.extend(_section(child(component, "section"), level + 1))
    return out


def _lines(narrative: etree._Element | None) -> list[str]:
    """The narrative's text, one line per paragraph, list item or table row."""
    if narrative is None:
        return []
    lines, current = [], []
    for event, element in etree.iterwalk(narrative, events=("start", "end")):
        name = etree.QName(element).localname if isinstance(element.tag, str) else ""
        if event == "start":
            if element.text:
                current.append(element.text)
        else:
            if name in _BLOCKS and name != "content":
                lines.append(" ".join("".join(current).split()))
                current = []
            if element is not narrative and element.tail:
                current.append(element.tail)
    lines.append(" ".join("".join(current).split()))
    return [line for line in lines if line]
