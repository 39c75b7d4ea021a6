"""The plumbing every program shares, and nothing above it: settings and
connections (settings, db, pgserver for the embedded cluster, citus for a
local Citus cluster), the SQL installer, CSV records and loading (csvrecords,
migrate, generate for sample data), the HTTP client (client), reject files
(rejects), the error catalogue (errors) and JSON logs (logs). It never
imports the layers above it: backup/, reports/, api/, app.py, the command
line (cli/) or the bench (tests/test_layers.py checks). The rules themselves
live in SQL: schema/, procedures/ and views/."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("dataarch")
except _metadata.PackageNotFoundError:  # run from a tree that was never installed
    __version__ = "unknown"
