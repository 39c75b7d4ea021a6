"""The migration on Citus: the real challenge data and CSV records, in one
and in several sessions (the helpers judge on the workers), an initial
load, and the published KPIs over what it loaded."""

import pytest
from conftest import citus_postgresql
from test_kpis import test_published_results_on_the_real_data  # noqa: F401
from test_migrate import (  # noqa: F401 - collected again, here
    db,
    test_a_line_holding_only_backslash_dot_is_one_more_record,
    test_an_initial_load_rebuilds_the_indexes_once,
    test_foreign_keys_are_back_after_a_migration,
    test_one_two_and_four_sessions_give_the_same_outcome,
    test_quoted_fields_hold_delimiters_quotes_and_line_breaks,
    test_real_challenge_data,
    test_rejected_lines_keep_file_line_and_raw_text,
)

from dataarch import migrate

postgresql = citus_postgresql
pytestmark = pytest.mark.citus


def test_the_workers_judge(postgresql) -> None:
    coordinator = postgresql
    workers = coordinator.execute(migrate.CITUS_WORKERS).fetchall()
    coordinator.commit()
    helpers = migrate._helpers(coordinator, len(workers))
    try:
        assert sorted(h.info.port for h in helpers) == sorted(port for _, port in workers)
        for helper in helpers:  # each can judge there: the functions reached the workers
            assert helper.execute(migrate.JUDGE_EXISTS).fetchone()[0]
    finally:
        for helper in helpers:
            helper.close()
