"""Strings from users, files and URLs, made inert before they reach Markdown. No streamlit."""

from __future__ import annotations

import re

# Every character Markdown (and GitHub's extensions: tables, strikethrough, autolinks, math) gives a meaning to.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def markdown(text: object) -> str:
    """`text` shown literally inside Markdown: no links, images, emphasis, HTML or maths can come from it."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")
