"""Render user text: Markdown to HTML, then sanitized, so typed script stays inert."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# html=False: raw HTML in the source is escaped and shown as typed (an XSS report is a
# legitimate ticket); linkify is off so nothing is guessed to be a link.
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")

_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "em",
    "strong",
    "s",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "img",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}


def render_markdown(text: str) -> str:
    """Safe HTML for a description or response; links get rel=noopener noreferrer nofollow."""
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def sanitize_html(html: str) -> str:
    """For HTML that arrives as HTML (mail): keep structure, drop anything active."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
