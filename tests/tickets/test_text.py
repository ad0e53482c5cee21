"""Text as typed goes in; rendered text never becomes script. Properties over any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportdesk.errors import InvalidChange
from supportdesk.tickets.text import render_markdown, sanitize_html
from supportdesk.tickets.validation import clean_text
from tests.tickets.html_safety import active_parts, links

# Pieces an attacker would type, mixed into arbitrary text so the properties see them often.
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "![x](data:text/html;base64,PHNjcmlwdD4=)",
    '<svg onload="alert(1)">',
    "<iframe src=https://example.org>",
    '" onmouseover="alert(1)',
    "<style>*{}</style>",
    '[x](https://example.org "t" onclick=alert(1))',
    "\x00",
    "\ud800",
    "\n\n",
    "`code`",
    "<",
    ">",
    "&",
]
hostile_text = st.lists(st.one_of(st.text(), st.sampled_from(HOSTILE)), max_size=8).map("".join)
any_text = st.text(alphabet=st.characters(codec=None), max_size=300)


@given(st.one_of(hostile_text, any_text))
@settings(max_examples=200, deadline=None)
def test_clean_text_never_lets_a_nul_or_a_surrogate_through(value):
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        with pytest.raises(InvalidChange) as refused:
            clean_text(value, field="description")
        assert refused.value.field == "description"
        return
    cleaned = clean_text(value, field="description")
    cleaned.encode("utf-8")  # storable: no UnicodeEncodeError
    assert "\r" not in cleaned  # line breaks are stored as LF whatever the channel sent
    assert cleaned == value.replace("\r\n", "\n").replace("\r", "\n").strip()


@given(hostile_text.filter(lambda t: "\x00" not in t and "\ud800" not in t))
@settings(max_examples=200, deadline=None)
def test_rendered_markdown_never_holds_script_or_event_handlers(text):
    html = render_markdown(text)
    assert active_parts(html) == []
    assert all(link.get("rel") == "noopener noreferrer nofollow" for link in links(html))


@given(hostile_text.filter(lambda t: "\x00" not in t and "\ud800" not in t))
@settings(max_examples=200, deadline=None)
def test_sanitized_mail_html_never_holds_script_or_event_handlers(html):
    assert active_parts(sanitize_html(html)) == []


@pytest.mark.parametrize(
    "html",
    [
        "<script>x</script>",
        '<a href="javascript:x">y</a>',
        '<p onclick="x">y</p>',
        '<img src="data:text/html,x">',
    ],
)
def test_the_inspector_used_above_does_find_active_html(html):
    assert active_parts(html) != []


def test_markdown_renders_formatting_and_safe_links():
    html = render_markdown("**bold** and [docs](https://example.org/a?b=1) and `<b>`")
    assert "<strong>bold</strong>" in html
    assert "<code>&lt;b&gt;</code>" in html
    assert links(html) == [
        {"href": "https://example.org/a?b=1", "rel": "noopener noreferrer nofollow"}
    ]


def test_mail_html_keeps_structure_and_loses_script():
    html = sanitize_html('<p>Hi <b onclick="x">there</b><script>steal()</script></p>')
    assert html.startswith("<p>Hi ")
    assert "steal" not in html
    assert active_parts(html) == []
