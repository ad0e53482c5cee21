"""API clients for the personas: each sends its own Bearer token."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from supportdesk.accounts.services import create_token

API = "/api/v1"


class ApiClient:
    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}

    def get(self, path, data=None, **extra):
        return self.client.get(API + path, data, **self.headers, **extra)

    def post(self, path, body=None, **extra):
        return self.client.post(
            API + path,
            json.dumps(body or {}),
            content_type="application/json",
            **self.headers,
            **extra,
        )

    def patch(self, path, body=None, **extra):
        return self.client.patch(
            API + path,
            json.dumps(body or {}),
            content_type="application/json",
            **self.headers,
            **extra,
        )

    def raw(self, method, path, data, content_type, **extra):
        return self.client.generic(
            method, API + path, data, content_type=content_type, **self.headers, **extra
        )

    def upload(self, path, files):
        return self.client.post(API + path, {"files": files}, **self.headers)


def api_client(user, **token_options) -> ApiClient:
    _token, secret = create_token(user, **token_options)
    return ApiClient(secret)


@pytest.fixture
def as_bob(bob):
    return api_client(bob)


@pytest.fixture
def as_carol(carol):
    return api_client(carol)


@pytest.fixture
def as_alice(alice):
    return api_client(alice)


@pytest.fixture
def anonymous():
    return ApiClient(None)
