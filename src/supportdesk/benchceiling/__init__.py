"""The framework's ceiling for bench/: a trivial view that inserts one integer row.

Installed, and its URL mounted, only when SUPPORTDESK_BENCH_CEILING=true: bench/api.py sets it
on the server it measures, so that the same process, settings, middleware and database answer
both the API and this view. A normal installation has neither the table nor the URL.
"""
