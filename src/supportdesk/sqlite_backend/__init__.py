"""SQLite with its writers queued on a lock file: see base.py."""
