"""Find anything active in rendered HTML: what the sanitizer must never let through."""

from __future__ import annotations

from html.parser import HTMLParser

ACTIVE_TAGS = {"script", "style", "iframe", "object", "embed", "form", "input", "svg", "math"}
SAFE_SCHEMES = ("http://", "https://", "mailto:")


class _Inspector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in {"style", "srcdoc", "formaction"}:
                self.problems.append(f"{tag}[{name}]")
            if name in {"href", "src"} and not _is_safe_url(value or ""):
                self.problems.append(f"{tag}[{name}={value}]")
        if tag == "a":
            self.links.append(dict(attrs))


def _is_safe_url(url: str) -> bool:
    """Relative, or one of the schemes the sanitizer allows (no javascript:, data:)."""
    scheme_part = url.split("/")[0].split("?")[0].split("#")[0]
    return ":" not in scheme_part or url.lower().startswith(SAFE_SCHEMES)


def active_parts(html: str) -> list[str]:
    """Script tags, event handler attributes and unsafe URLs found in html."""
    inspector = _Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.problems


def links(html: str) -> list[dict[str, str | None]]:
    inspector = _Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.links
