"""Lineage and revert on Citus: a revert of each kind of batch, dependants
refused then cascaded, the rule of the bookkeeping after each."""

import pytest
from conftest import citus_postgresql
from test_lineage import (  # noqa: F401 - collected again, here
    test_a_revert_of_each_kind_takes_out_exactly_its_rows,
    test_a_revert_reopens_what_it_resolved_and_forgets_its_file,
    test_a_row_from_each_kind_of_source_knows_where_it_came_from,
    test_dependants_are_refused_then_cascaded,
    test_the_fix_loop_is_visible,
)

postgresql = citus_postgresql
pytestmark = pytest.mark.citus
