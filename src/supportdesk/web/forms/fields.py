"""Form fields the ticket forms share: several files at once, a list of addresses."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import validate_email


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Zero or more files; each must be non-empty and within UPLOAD_MAX_BYTES."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = list(data) if isinstance(data, (list, tuple)) else ([data] if data else [])
        errors = []
        for upload in files:
            name = upload.name or "attachment"
            if not upload.size:
                errors.append(ValidationError(f"Attachments: {name} is empty."))
            elif upload.size > settings.UPLOAD_MAX_BYTES:
                limit = max(settings.UPLOAD_MAX_BYTES // (1024 * 1024), 1)
                errors.append(
                    ValidationError(f"Attachments: {name} is larger than the {limit} MB limit.")
                )
        if errors:
            raise ValidationError(errors)
        return files


class EmailListField(forms.CharField):
    """Addresses separated by commas, semicolons or new lines."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2}))
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 20_000)
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().clean(value)
        addresses = [part.strip() for part in re.split(r"[,;\n\r]+", text or "") if part.strip()]
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"CCs: {address} is not an email address.") from None
        return addresses


def text_as_list(values: list[str]) -> str:
    return "\n".join(values)
