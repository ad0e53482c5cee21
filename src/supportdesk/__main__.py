"""`python -m supportdesk` is the same as the `supportdesk` command."""

from supportdesk.cli import main

raise SystemExit(main())
