"""Settings for the test run: the real settings, read with test-friendly environment.

Fast password hashing, the `testserver` host, static files without a manifest, and a
throwaway data directory unless the caller chose one.
"""

import os
import tempfile

os.environ.setdefault("SUPPORTDESK_TESTING", "true")
os.environ.setdefault("SUPPORTDESK_HOME", tempfile.mkdtemp(prefix="supportdesk-test-"))

from supportdesk.settings import *  # noqa: F403

# WhiteNoise warns when the collected-static directory is missing; tests serve from finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

if USING_SQLITE:  # noqa: F405
    # A file, as in production (WAL, IMMEDIATE transactions), so that tests racing several
    # connections run on SQLite too; an in-memory database answers "table is locked" at once.
    DATABASES["default"]["TEST"] = {"NAME": str(HOME / "test.sqlite3")}  # noqa: F405
    # Durability is not under test here; waiting for the disk would only slow the suite.
    DATABASES["default"]["OPTIONS"] = {  # noqa: F405
        **DATABASES["default"]["OPTIONS"],  # noqa: F405
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
    }
