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
