"""Attachments stored by reference: a file already kept in storage is attached, not copied."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from supportdesk.errors import InvalidChange
from supportdesk.tickets.attachments import StoredFile, check_uploads, store_attachments
from tests.factories import make_ticket


@pytest.mark.django_db
def test_a_stored_file_is_attached_by_its_name_and_nothing_is_written(bob):
    ticket = make_ticket(requester=bob)
    kept = default_storage.save("mail/raw/kept.eml", ContentFile(b"Subject: hi\r\n\r\nbody\r\n"))
    before = sorted(default_storage.listdir("mail/raw")[1])
    upload = StoredFile("original-message.eml", default_storage.size(kept), kept)
    (attachment,) = store_attachments(
        ticket, check_uploads([upload]), acting_user=bob, response=None
    )
    attachment.refresh_from_db()
    assert attachment.file.name == kept
    assert attachment.filename == "original-message.eml"
    assert attachment.size == upload.size
    assert sorted(default_storage.listdir("mail/raw")[1]) == before
    with attachment.file.open("rb") as stored:
        assert stored.read() == b"".join(upload.chunks())


@pytest.mark.django_db
def test_a_stored_file_gets_the_checks_of_any_upload(bob):
    with pytest.raises(InvalidChange, match="empty"):
        check_uploads([StoredFile("original-message.eml", 0, "mail/raw/none.eml")])
