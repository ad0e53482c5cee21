"""A field's error is announced: every id a control names in aria-describedby exists."""

from __future__ import annotations

import re


def test_every_described_by_id_of_an_invalid_form_is_on_the_page(as_bob):
    response = as_bob.post("/tickets/new/", {"type": "incident", "priority": "normal"})
    assert response.status_code == 400
    html = response.content.decode()
    described = re.findall(r'aria-describedby="([^"]+)"', html)
    ids = {name for group in described for name in group.split()}
    assert any(name.endswith("_error") for name in ids)  # the missing title is described
    missing = sorted(name for name in ids if f'id="{name}"' not in html)
    assert missing == []
