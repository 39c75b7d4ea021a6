"""The `dataarch` command and the plumbing every program shares: settings
and connections (settings, db, pgserver for the embedded cluster), the SQL
installer, the CSV migration (migrate, generate for sample data), the HTTP
client (client), JSON logs (logs) and a served child process for the bench
and tests (server_process). The rules themselves live in SQL: schema/,
procedures/ and views/."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("dataarch")
except _metadata.PackageNotFoundError:  # run from a tree that was never installed
    __version__ = "unknown"
