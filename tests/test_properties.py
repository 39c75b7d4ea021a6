"""Property: for any batch, inserted + rejected = submitted, every rejection
has a known reason, no id is inserted twice, and nothing inserted is logged."""

from __future__ import annotations

import json

import psycopg
from conftest import load_reference_rows
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

GOOD = {
    "employee_id": st.integers(1, 300),
    "employee_name": st.text(min_size=1, max_size=30).filter(lambda s: s.strip(" \t\r\n")),
    "hiring_date": st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
    ),
    "department_id": st.integers(1, 3),
    "job_id": st.integers(1, 3),
}
NOISE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(" \t", max_size=3),
    st.just("x" * 201),
    st.just("2021-02-30T00:00:00Z"),
    st.just({"nested": [1]}),
)


@st.composite
def rows(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 40)) == 0:
        return draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers())))
    row = {}
    bad_share = draw(st.floats(0, 1))
    for column, good in GOOD.items():
        if draw(st.floats(0, 1)) < bad_share:
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue  # missing
            row[column] = draw(NOISE)
        else:
            row[column] = draw(good)
    if draw(st.integers(0, 20)) == 0:
        row["surplus"] = 1
    if draw(st.integers(0, 6)) == 0:  # the same values as a record: fields in column order
        return [row.get(column) for column in GOOD] + (["surplus"] if "surplus" in row else [])
    return row


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(rows(), min_size=1, max_size=60))
def test_every_row_is_accounted_for(conn: psycopg.Connection, batch: list) -> None:
    if not conn.execute("select count(*) from departments").fetchone()[0]:
        load_reference_rows(conn)
    before = {r[0] for r in conn.execute("select employee_id from employees").fetchall()}
    batches_before = conn.execute("select count(*) from ingest_batches").fetchone()[0]
    # sent as the HTTP service sends it: the JSON text, NUL escapes and all
    query = "select ingest_batch_json('employees', %s, 'per_row', 'api')"
    result = conn.execute(query, (json.dumps(batch),)).fetchone()[0]
    assert conn.execute("select count(*) from ingest_batches").fetchone()[0] == batches_before + 1

    assert result["submitted"] == len(batch)
    assert result["inserted"] + result["rejected"] == result["submitted"]
    rejected = {r["index"] for r in result["rejections"]}
    assert len(rejected) == result["rejected"]
    known = {r[0] for r in conn.execute("select reason_code from reason_codes").fetchall()}
    assert all(r["reason_code"] in known for r in result["rejections"])

    accepted = [batch[i] for i in range(len(batch)) if i not in rejected]
    # an accepted row is an object, or a record (an array of the fields in order)
    accepted_ids = [int(float(row["employee_id"] if isinstance(row, dict) else row[0]))
                    for row in accepted]  # fmt: skip
    assert len(set(accepted_ids)) == len(accepted_ids)
    assert not set(accepted_ids) & before
    after = {r[0] for r in conn.execute("select employee_id from employees").fetchall()}
    assert after == before | set(accepted_ids)

    logged = {
        r[0]
        for r in conn.execute(
            "select row_index from ingest_errors where batch_id = %s", (result["batch_id"],)
        ).fetchall()
    }
    assert logged == rejected


# Date-times shaped like ISO 8601 but with any two digits in every field: the rule
# must accept exactly those that PostgreSQL's own ::timestamptz cast takes as written.
def _two_digits(*values: int) -> st.SearchStrategy[str]:
    return st.sampled_from(values).map("{:02d}".format)


SHAPED_DATETIMES = st.builds(
    "{}-{}-{}T{}:{}:{}{}".format,
    st.sampled_from(["0000", "1900", "2000", "2021", "2024", "2100"]),
    _two_digits(*range(14)),
    _two_digits(0, 1, 9, 28, 29, 30, 31, 32, 99),
    _two_digits(0, 9, 23, 24, 99),
    _two_digits(0, 59, 60),
    _two_digits(0, 59, 60, 61),
    st.one_of(st.just("Z"), st.builds("{}{}:{}".format, st.sampled_from("+-"),
                                      _two_digits(0, 14, 15, 99), _two_digits(0, 59, 60))),
)  # fmt: skip


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=SHAPED_DATETIMES)
# the 29th of February of a century, a fourth century and two plain years
@example(text="1900-02-29T00:00:00Z")
@example(text="2000-02-29T00:00:00Z")
@example(text="2021-02-29T00:00:00Z")
@example(text="2024-02-29T00:00:00+01:00")
def test_the_datetime_rule_matches_the_cast(conn: psycopg.Connection, text: str) -> None:
    problem = conn.execute("select _datetime_problem(%s, 'string')", (text,)).fetchone()[0]
    month, day, hour, minute, second = (int(text[i : i + 2]) for i in (5, 8, 11, 14, 17))
    offset_hours, offset_minutes = (int(text[i : i + 2]) if len(text) > 20 else 0 for i in (20, 23))
    try:
        with conn.transaction():
            conn.execute("select %s::timestamptz", (text,))
        cast_ok = True
    except psycopg.errors.DataError:
        cast_ok = False
    # the cast also takes what the rule refuses on purpose: 24:00, a leap second,
    # offsets beyond 14:59, year 0 (read as 1 BC)
    means_what_it_says = (
        hour < 24 and minute < 60 and second < 60 and offset_hours < 15 and offset_minutes < 60
        and not text.startswith("0000") and 1 <= month <= 12 and day >= 1
    )  # fmt: skip
    assert (problem is None) == (cast_ok and means_what_it_says), (text, problem)


# Strings near a date-time: every shape the rule allows (separator, seconds,
# fraction, zone), any two digits in each field, then a character or two
# replaced, inserted or deleted. The rule's fast form for the usual shape (no
# regular expression) must give the verdict of its statement,
# _any_datetime_problem (the pattern, the day, the range in UTC).
_NEAR = "0123456789-:Tt zZ+.xé"


@st.composite
def near_datetimes(draw: st.DrawFn) -> str:
    two = st.integers(0, 99).map("{:02d}".format)
    zone = draw(st.one_of(st.sampled_from(["Z", "z", ""]), st.builds(
        "{}{}{}{}".format, st.sampled_from("+-"), two, st.sampled_from(["", ":"]), two
    ), st.builds("{}{}".format, st.sampled_from("+-"), two)))  # fmt: skip
    seconds = draw(st.one_of(st.just(""), st.builds(":{}".format, two), st.builds(
        ":{}.{}".format, two, st.from_regex(r"[0-9]{0,7}", fullmatch=True))))  # fmt: skip
    text = "{}{}-{}-{}{}{}:{}".format(
        draw(two), draw(two), draw(two), draw(two), draw(st.sampled_from("Tt x")),
        draw(two), draw(two),
    ) + seconds + zone  # fmt: skip
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        put = draw(st.sampled_from(["", *_NEAR]))
        text = text[:at] + put + text[at + draw(st.integers(0, 1)) :]
    return text


# The usual shape, 2021-11-07T02:48:42Z, with any four-digit year (leap or
# not, 0000 included), any month and day, and a field's digit now and then
# replaced by something else of one character.
@st.composite
def usual_datetimes(draw: st.DrawFn) -> str:
    year, month, day, hour, minute, second = (
        draw(st.integers(0, top)) for top in (9999, 13, 32, 25, 61, 61)
    )
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
    if draw(st.booleans()):
        at = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]))
        text = text[:at] + draw(st.sampled_from(["x", "-", " ", "é", "٣"])) + text[at + 1 :]
    return text


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.one_of(near_datetimes(), SHAPED_DATETIMES, usual_datetimes()))
def test_the_datetime_rule_gives_the_verdict_of_its_statement(
    conn: psycopg.Connection, text: str
) -> None:
    rule, statement = conn.execute(
        "select _datetime_problem(%s, 'string'), _any_datetime_problem(%s)", (text, text)
    ).fetchone()
    assert rule == statement, text


# Names of every length around the limit, blank or not at either end, with
# characters of one to four bytes: the rule, which trims only when it may
# matter, gives the verdict of its statement (Python's strip and len are
# PostgreSQL's btrim of those blanks and char_length).
_NAME_CHARS = st.sampled_from([" ", "\t", "\r", "\n", "a", "Z", "é", "€", "😀", "\uffff"])


@settings(
    max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.text(_NAME_CHARS, max_size=8),
        st.builds(
            "{}{}{}".format,
            st.text(st.sampled_from(" \t\r\n"), max_size=3),
            st.integers(195, 205).flatmap(
                lambda n: st.text(st.sampled_from("aé€😀"), min_size=n, max_size=n)
            ),
            st.text(st.sampled_from(" \t\r\n"), max_size=3),
        ),
    )
)
def test_the_name_rule_gives_the_verdict_of_its_statement(
    conn: psycopg.Connection, name: str
) -> None:
    problem = conn.execute("select _name_problem(%s, 'string')", (name,)).fetchone()[0]
    trimmed = name.strip(" \t\r\n")
    expected = (
        "invalid_character" if "\uffff" in name
        else "blank_string" if not trimmed
        else "too_long" if len(trimmed) > 200
        else None
    )  # fmt: skip
    assert problem == expected, name


# Every instant at the edges of the storable range, in every offset: accepted
# exactly when it falls in the years 0001 to 9999 in UTC.
EDGE_DAYS = {"0001-01-01": 0, "0001-01-02": 86400, "9999-12-30": -86400, "9999-12-31": 0}


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    day=st.sampled_from(sorted(EDGE_DAYS)),
    seconds=st.one_of(st.integers(0, 86399), st.sampled_from([0, 59, 86340, 86399])),
    offset=st.one_of(st.just(None), st.integers(-(14 * 60 + 59), 14 * 60 + 59)),
)
def test_dates_stay_in_the_years_avro_and_iso_hold(
    conn: psycopg.Connection, day: str, seconds: int, offset: int | None
) -> None:
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    zone = (
        "Z"
        if offset is None
        else f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    )
    text = f"{day}T{clock}{zone}"
    problem = conn.execute("select _datetime_problem(%s, 'string')", (text,)).fetchone()[0]
    # seconds from the day's UTC midnight, shifted onto the day of the edge it is near
    utc = seconds - 60 * (offset or 0) + EDGE_DAYS[day]
    inside = utc >= 0 if day.startswith("0001") else utc < 86400
    assert problem == (None if inside else "datetime_out_of_range"), text


# JSON numbers of every shape: plain, with a fraction, with an exponent up to
# what PostgreSQL's numeric holds (1e131071 is 131 072 digits written out).
JSON_NUMBERS = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["", "-"]),
    st.one_of(st.integers(0, 10**12).map(str), st.sampled_from(["0", "1", "2147483647"])),
    st.one_of(st.just(""), st.builds(".{}".format, st.from_regex(r"[0-9]{1,30}", fullmatch=True))),
    st.one_of(st.just(""), st.builds("e{}".format, st.integers(-16000, 131000))),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(number=JSON_NUMBERS)
def test_a_numbers_short_text_gets_the_verdict_of_its_whole_text(
    conn: psycopg.Connection, number: str
) -> None:
    """_json_text writes a number in a few characters, whatever its exponent,
    and the id rule judges that text as it judges the number written out."""
    short, problem, whole_problem = conn.execute(
        "select _json_text(v), _id_problem(_json_text(v), 'number'),"
        " _id_problem(v #>> '{}', 'number') from (select %s::jsonb as v) as j",
        (number,),
    ).fetchone()
    assert len(short) <= 48, (number, short)
    assert problem == whole_problem, (number, short)
