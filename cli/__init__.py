"""The `dataarch` command, on top of every layer: the plumbing (dataarch/),
backups (backup/), reports (reports/), the HTTP service (app.py, api/) and
the bench. Each command's module is loaded only when that command runs
(main.py's COMMANDS); commands/ holds those of the plumbing's own work."""
