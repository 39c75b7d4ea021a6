"""Backup and restore on Citus: round trips, a bad file changes nothing,
references decide a parent's restore, and the KPIs equal a recount."""

import pytest
from conftest import citus_postgresql
from test_backup import (  # noqa: F401 - collected again, here
    db,
    test_a_bad_file_changes_nothing,
    test_backup_files_agree_with_each_other,
    test_references_decide_a_parent_restore,
    test_round_trip_every_table,
)

postgresql = citus_postgresql
pytestmark = pytest.mark.citus
