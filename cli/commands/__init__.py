"""The `dataarch` commands, one module per kind of work. Each module has a
COMMANDS table: name -> (add_arguments, run). cli/main.py imports a
module only when one of its commands runs, so starting the CLI loads none
of the layers above the plumbing (the app, backups, reports, the bench)."""
