"""Strings from users, files and URLs, made inert before they reach a sink that gives characters a meaning: Markdown
(Streamlit's messages and captions), HTML, and Plotly's text (which reads a subset of HTML, links included). The one
place every foreign string passes through on its way to the page. No streamlit.
"""

from __future__ import annotations

import html as _html
import re

# Every character Markdown (and GitHub's extensions: tables, strikethrough, autolinks, math) gives a meaning to.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
# Streamlit's Markdown (remark-gfm) links bare "https://…", "www.…" and "name@host.tld" found in *text*, after
# backslash escapes are resolved, so escaping cannot stop it. An invisible WORD JOINER inside each pattern does:
# the text reads the same and no longer matches.
_AUTOLINK = re.compile(r"(?i)(?<=www)(?=\.)|(?=:/)|(?=@)")
WORD_JOINER = "\u2060"


def markdown(text: object) -> str:
    """`text` shown literally inside Markdown: no links (bare URLs included), images, emphasis, HTML or maths
    can come from it, and it stays on one line."""
    inert = _AUTOLINK.sub(WORD_JOINER, str(text).replace("\r", " ").replace("\n", " "))
    return _MARKDOWN.sub(r"\\\1", inert)


def html(text: object) -> str:
    """`text` as literal HTML text or attribute value."""
    return _html.escape(str(text), quote=True)


def plotly(text: object) -> str:
    """`text` shown literally in a Plotly title, tick label or hover text: its HTML subset (<a href>, <b>, <br>)
    escaped, and `%{` kept from starting a hover-template field."""
    return html(text).replace("%{", "%&#123;")
