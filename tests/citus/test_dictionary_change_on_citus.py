"""The data dictionary's change proof on Citus: the one migration of
tests/test_dictionary_change.py, applied to a Citus database of today's
release, and the new table is placed by the rule (a table nobody references
is distributed by its id; the one it references stays a reference table)."""

import psycopg
import pytest
from psycopg.types.json import Jsonb
from test_dictionary_change import changed_copy

from dataarch.installer import install

pytestmark = pytest.mark.citus


def test_the_new_table_is_distributed_as_the_rule_says(citus_cluster, tmp_path) -> None:
    url = citus_cluster.create_database("change_proof_citus")
    with psycopg.connect(url, autocommit=True) as conn:
        install(conn)  # today's release
        conn.execute("insert into jobs (job_id, job_name) values (1, 'Analyst')")
        applied = install(conn, changed_copy(tmp_path / "project"))
        assert "citus: trainings: distributed by training_id, 4 shards" in applied  # 2 workers
        placed = dict(
            conn.execute(
                "select logicalrelid::text, case when partmethod = 'n' then 'reference'"
                " else column_to_column_name(logicalrelid, partkey) end"
                " from pg_dist_partition where logicalrelid in ('jobs'::regclass,"
                " 'trainings'::regclass)"
            ).fetchall()
        )
        assert placed == {"jobs": "reference", "trainings": "training_id"}
        outcome = conn.execute(
            "select ingest_batch('trainings', %s)",
            (Jsonb([[1, "Safety", 1], [2, "Nowhere", 77]]),),
        ).fetchone()[0]
        assert (outcome["inserted"], outcome["rejected"]) == (1, 1)
        assert conn.execute(
            "select constraint_name from ingest_errors where batch_id = %s",
            (outcome["batch_id"],),
        ).fetchall() == [("trainings_job_id_fkey",)]
        assert conn.execute("select job_level from jobs").fetchall() == [(1,)]
