"""Formatting for pages: times in the user's zone, rendered Markdown, history values."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from supportdesk.tickets.text import render_markdown

register = template.Library()

FIELD_LABELS = {
    "ccs": "CCs",
    "title": "Title",
    "description": "Description",
    "type": "Type",
    "priority": "Priority",
    "status": "Status",
    "tags": "Tags",
    "application": "Application",
    "environments": "Environments",
    "assignee": "Assignee",
    "problem": "Problem",
    "requester": "Requester",
    "attachments": "Attachments",
}


@register.simple_tag
def when(value: datetime | None, format_string: str = "j M Y, H:i") -> SafeString | str:
    """A <time> element: machine-readable instant, shown in the active (user's) zone."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}">{}</time>', local.isoformat(), dateformat.format(local, format_string)
    )


@register.filter
def markdown(text: str) -> SafeString:
    """User Markdown as HTML. render_markdown sanitizes its output, so it alone is trusted."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308  (sanitized by nh3)


@register.filter
def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


@register.filter
def change_value(value: object) -> str:
    """A history value as text: lists joined, nothing shown as a dash."""
    if value is None or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
