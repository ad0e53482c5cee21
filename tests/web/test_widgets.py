"""The fast select widgets render the same HTML as Django's own, escaped the same way."""

import pytest
from django import forms
from django.test.html import parse_html

from supportdesk.web.forms.widgets import FastSelect, FastSelectMultiple

CHOICES = [
    ("", "All applications"),
    ("Acme <Corp>", [(1, "Shop"), (2, 'Portal "new"')]),
    ("Globex", [(3, "<script>alert(1)</script>")]),
]


@pytest.mark.parametrize("value", [None, "", 1, 3, "2"])
def test_fast_select_matches_djangos_select(value):
    attrs = {"id": "id_application", "hx-get": "/x/?a=1&b=2", "required": True}
    ours = FastSelect(choices=CHOICES).render("application", value, attrs)
    django = forms.Select(choices=CHOICES).render("application", value, attrs)
    assert parse_html(ours) == parse_html(django)
    assert "<script>" not in ours


@pytest.mark.parametrize("value", [[], [1], [1, 3], ["2", "3"]])
def test_fast_select_multiple_matches_djangos_select_multiple(value):
    attrs = {"id": "id_environments"}
    ours = FastSelectMultiple(choices=CHOICES).render("environments", value, attrs)
    django = forms.SelectMultiple(choices=CHOICES).render("environments", value, attrs)
    assert parse_html(ours) == parse_html(django)
    assert "multiple" in ours
