"""The settings' environment helpers: strict booleans and numbers, secrets, the data key."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from supportdesk import settings as sd
from tests.test_cli import cli_environment


@pytest.mark.parametrize("value", ["yes", "1", "on", "True!", "no"])
def test_env_bool_rejects_anything_but_true_or_false(monkeypatch, value):
    monkeypatch.setenv("SUPPORTDESK_SOME_FLAG", value)
    with pytest.raises(
        ImproperlyConfigured, match="SUPPORTDESK_SOME_FLAG must be 'true' or 'false'"
    ):
        sd.env_bool("SUPPORTDESK_SOME_FLAG", default=False)


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [("true", False, True), ("FALSE", True, False), (" True ", False, True), ("", True, True)],
)
def test_env_bool_reads_true_and_false_in_any_case(monkeypatch, value, default, expected):
    monkeypatch.setenv("SUPPORTDESK_SOME_FLAG", value)
    assert sd.env_bool("SUPPORTDESK_SOME_FLAG", default=default) is expected


def test_env_int_rejects_words_and_reads_numbers(monkeypatch):
    monkeypatch.setenv("SUPPORTDESK_SOME_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        sd.env_int("SUPPORTDESK_SOME_NUMBER", default=1)
    monkeypatch.setenv("SUPPORTDESK_SOME_NUMBER", "25")
    assert sd.env_int("SUPPORTDESK_SOME_NUMBER", default=1) == 25


def test_env_secret_reads_the_variable_or_the_file_it_names(monkeypatch, tmp_path):
    monkeypatch.delenv("SUPPORTDESK_SOME_SECRET", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")
    monkeypatch.setenv("SUPPORTDESK_SOME_SECRET_FILE", str(secret_file))
    assert sd.env_secret("SUPPORTDESK_SOME_SECRET") == "from-the-file"
    monkeypatch.setenv("SUPPORTDESK_SOME_SECRET", "from-the-variable")
    assert sd.env_secret("SUPPORTDESK_SOME_SECRET") == "from-the-variable"


def test_dotenv_lines_are_parsed_and_comments_skipped(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# a comment\nSUPPORTDESK_A=1\n\nSUPPORTDESK_B = 'two words'\nnot a pair\n")
    assert sd._read_dotenv(dotenv) == {"SUPPORTDESK_A": "1", "SUPPORTDESK_B": "two words"}
    assert sd._read_dotenv(tmp_path / "missing") == {}


@pytest.fixture
def keyless(monkeypatch, tmp_path):
    """The key helper pointed at an empty data directory, with no key in the environment."""
    monkeypatch.delenv("SUPPORTDESK_SECRET_KEY", raising=False)
    monkeypatch.delenv("SUPPORTDESK_SECRET_KEY_FILE", raising=False)
    monkeypatch.setattr(sd, "_DOTENV", {})
    monkeypatch.setattr(sd, "HOME", tmp_path / "home")
    return tmp_path / "home"


def test_with_sqlite_a_secret_key_is_generated_once_and_reused(monkeypatch, keyless):
    monkeypatch.setattr(sd, "USING_SQLITE", True)
    first = sd._secret_key()
    key_file = keyless / "secret_key"
    assert len(first) >= 50
    assert key_file.read_text() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sd._secret_key() == first
    assert key_file.read_text() == first


def test_with_another_database_no_key_is_generated(monkeypatch, keyless):
    monkeypatch.setattr(sd, "USING_SQLITE", False)
    assert sd._secret_key() == ""
    assert not keyless.exists()
    monkeypatch.setenv("SUPPORTDESK_SECRET_KEY", "shared-by-every-machine")
    assert sd._secret_key() == "shared-by-every-machine"


def test_a_mistyped_boolean_stops_the_command_with_its_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "supportdesk", "migrate"],
        env=cli_environment(tmp_path / "home", SUPPORTDESK_DEBUG="yes"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "SUPPORTDESK_DEBUG must be 'true' or 'false'" in result.stderr
    assert not (tmp_path / "home" / "supportdesk.sqlite3").exists()


@pytest.mark.parametrize(
    ("base_url", "secure"), [("https://desk.example.com", True), ("http://127.0.0.1:8000", False)]
)
def test_cookies_are_secure_exactly_when_the_base_url_is_https(tmp_path, base_url, secure):
    probe = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='supportdesk.settings'; django.setup(); {probe}"],
        env=cli_environment(tmp_path / "home", SUPPORTDESK_BASE_URL=base_url),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.split() == [str(secure), str(secure), "True"]
