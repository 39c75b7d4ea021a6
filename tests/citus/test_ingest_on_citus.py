"""ingest_batch on Citus: every reason code, the property test (fewer
examples), and concurrent batches and deletes, imported from the PostgreSQL
tier and run on the distributed tables."""

import pytest
import test_properties
from conftest import citus_postgresql
from hypothesis import HealthCheck, given, settings
from test_concurrency import (  # noqa: F401 - collected again, here
    test_a_batch_waits_for_the_delete_then_rejects,
    test_a_delete_waits_for_the_batch_then_fails,
    test_overlapping_batches_in_parallel,
)
from test_ingest_batch import *  # noqa: F403 - every test, and its `db` fixture

test_every_row_is_accounted_for = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)(
    given(batch=test_properties.st.lists(test_properties.rows(), min_size=1, max_size=60))(
        test_properties.test_every_row_is_accounted_for.hypothesis.inner_test
    )
)

postgresql = citus_postgresql
pytestmark = pytest.mark.citus
