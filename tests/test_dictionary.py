"""The data dictionary (schema/017, procedures/001): declared once, true to
the catalogue, and the source of every list of tables and columns."""

from __future__ import annotations

LINEAGE_COLUMNS = {"batch_id", "batch_position"}  # every table's, not the data's


def dictionary(conn) -> list[dict]:
    return conn.execute("select data_dictionary()").fetchone()[0]


def test_every_column_of_every_table_is_in_the_dictionary(conn) -> None:
    """A column added by ALTER TABLE without its dictionary row fails here."""
    for table in dictionary(conn):
        columns = [
            name
            for (name,) in conn.execute(
                "select attname from pg_attribute where attrelid = %s::regclass"
                " and attnum > 0 and not attisdropped order by attnum",
                (table["table"],),
            )
        ]
        listed = [c["name"] for c in table["columns"]]
        assert sorted(listed) == sorted(set(columns) - LINEAGE_COLUMNS), table["table"]
        assert table["id_column"] == listed[0]
        assert all(c["not_null"] for c in table["columns"]), "every field is mandatory"


def test_tables_load_after_the_tables_they_reference(conn) -> None:
    order = [t["table"] for t in dictionary(conn)]
    for table in dictionary(conn):
        for column in table["columns"]:
            if column["references"]:
                assert order.index(column["references"]) < order.index(table["table"])
    fk_order = conn.execute(
        "select c.conrelid::regclass::text, c.confrelid::regclass::text from pg_constraint as c"
        " where c.contype = 'f' and c.conrelid::regclass::text = any(_data_tables())"
    ).fetchall()
    for child, parent in fk_order:
        assert order.index(parent) < order.index(child)


def test_the_generated_functions_say_what_the_dictionary_says(conn) -> None:
    tables = dictionary(conn)
    assert conn.execute("select _data_tables()").fetchone()[0] == [t["table"] for t in tables]
    for table in tables:
        (columns,) = conn.execute("select _table_columns(%s)", (table["table"],)).fetchone()
        assert columns == [c["name"] for c in table["columns"]]
    assert conn.execute("select _table_columns('nobody')").fetchone()[0] is None
    (volatile,) = conn.execute(
        "select array_agg(proname::text) from pg_proc"
        " where proname in ('_data_tables', '_table_columns') and provolatile <> 'i'"
    ).fetchone()
    assert volatile is None, "generated as immutable constants, so plans fold them"


def test_every_reason_a_column_can_break_names_a_constraint_of_it(conn) -> None:
    """The rule of each column and the catalogue agree: an id has its
    positive check or a reference, a name its blank and length checks."""
    for table in dictionary(conn):
        name = table["table"]
        for column in table["columns"]:
            held = set(column["constraints"])
            if column["rule"] == "name":
                assert {f"{name}_name_not_blank", f"{name}_name_max_length"} <= held
            if column["rule"] == "id" and column["name"] == table["id_column"]:
                assert {f"{name}_pkey", f"{name}_id_positive"} <= held
            if column["rule"] == "id" and column["name"] != table["id_column"]:
                assert column["references"], (table["table"], column["name"])


def test_the_openapi_documents_copy_is_the_dictionary(conn) -> None:
    """The OpenAPI document built without a database describes the
    release's dictionary, a copy: this is where a copy that drifted fails.
    (A served app describes the database's: tests/test_dictionary_change.py.)"""
    from api.schemas import RELEASE_DICTIONARY
    from dataarch.dictionary import Dictionary

    assert Dictionary.from_json(dictionary(conn)) == RELEASE_DICTIONARY


# Where a table or column of the dictionary may be written as a literal, and
# why. Everything else reads the dictionary (data_dictionary(), _data_tables(),
# _table_columns(), dataarch.dictionary).
NAMED_ON_PURPOSE = {
    # the KPIs are about these columns (views/ are theirs too)
    "api/kpis.py": "the KPIs' columns",
    "reports/render.py": "the KPIs' columns",
    "procedures/005_engine.sql": "on Citus, hire counts become a view over employees",
    # the document built without a database describes the release's: a copy, checked above
    "api/schemas.py": "the release's dictionary, for the OpenAPI document built without one",
    # sets written by releases before numbered sets are full when they hold these
    "backup/store.py": "what a full set of an earlier release holds",
    # the benchmark's files are of these tables
    "bench/run.py": "the benchmark's files",
}


def test_no_table_or_column_is_named_outside_the_dictionary(conn) -> None:
    """A table or column of the dictionary written as a quoted literal in the
    code is a second list that a new column or table would miss. (SQL that
    names a table as an identifier, as the KPIs and hire counts do, is not
    a list, and is not looked for.)"""
    import re

    from conftest import PROJECT

    names = set()
    for table in dictionary(conn):
        names |= {table["table"], *(c["name"] for c in table["columns"])}
    alternatives = "|".join(sorted(names))
    literal = re.compile(rf"""["']({alternatives})["']""")
    code = [
        *PROJECT.glob("app.py"),
        *(p for d in ("api", "backup", "bench", "cli", "dataarch", "reports")
          for p in (PROJECT / d).rglob("*.py")),
        *(PROJECT / "procedures").glob("*.sql"),
    ]  # fmt: skip
    found = {
        f"{path.relative_to(PROJECT)}:{number}: {line.strip()}"
        for path in code
        if str(path.relative_to(PROJECT)) not in NAMED_ON_PURPOSE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line.split("--")[0] if path.suffix == ".sql" else line.split("#")[0])
    }
    assert not found, "\n".join(sorted(found))
    for path in NAMED_ON_PURPOSE:
        assert (PROJECT / path).exists(), f"{path} is listed but gone"
