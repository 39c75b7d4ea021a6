"""The project's own deterministic sample data: header-less CSVs shaped like
the seed's (12 departments, 183 jobs, employees hired over 2021-2022), with a
share of invalid employee lines of every kind the validation knows.
Same seed, same bytes: the benchmarks and data/historical rely on it.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEPARTMENTS = [
    "Product Management", "Sales", "Research and Development", "Business Development",
    "Engineering", "Human Resources", "Services", "Support", "Marketing", "Training",
    "Legal", "Accounting",
]  # fmt: skip
_JOB_ROOTS = [
    "Account Executive", "Accountant", "Actuary", "Analyst Programmer", "Budget Analyst",
    "Business Analyst", "Chemical Engineer", "Civil Engineer", "Data Engineer",
    "Database Administrator", "Design Engineer", "Developer", "Editor", "Financial Advisor",
    "Geologist", "Graphic Designer", "Help Desk Operator", "Internal Auditor",
    "Legal Assistant", "Marketing Assistant", "Nurse Practicioner", "Office Assistant",
    "Operator", "Payment Adjustment Coordinator", "Programmer", "Project Manager",
    "Quality Engineer", "Recruiter", "Research Associate", "Sales Associate",
    "Software Consultant", "Staff Accountant", "Statistician", "Structural Engineer",
    "Systems Administrator", "Tax Accountant", "Teacher", "Technical Writer",
    "VP Marketing", "VP Sales", "Web Designer", "Web Developer",
]  # fmt: skip
_LEVELS = ["", " I", " II", " III", " IV"]
_FIRST = [
    "Harold", "Ty", "Lyman", "Lola", "Zoé", "Chloé", "Sebastián", "María José", "Nuño",
    "Björn", "Åsa", "Zoë", "Marcelo", "Ana", "Liu", "Priya", "Olusegun", "Fatima", "Émile",
    "Grace", "Kenji", "Ingrid", "Mateo", "Aiko", "Dmitri", "Noor", "Siobhán", "Tomás",
]  # fmt: skip
_LAST = [
    "Vogt", "Hofer", "Hadye", "Gonzalez", "Müller", "O'Brien", "Dvořák", "Núñez",
    "Smith", "García", "Nakamura", "Okafor", "Rossi", "Kowalski", "Søndergaard",
    "Van der Berg", "Ferreira", "Lindqvist", "Abubakar", "Papadopoulos",
]  # fmt: skip
START = datetime(2021, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 2 * 365 * 24 * 3600

# Each kind of invalid line, as (label, function of a valid row -> bad row).
# Fields: id, name, hiring_date, department_id, job_id.
BAD_KINDS: list[tuple[str, object]] = [
    ("missing_name", lambda r: [r[0], "", r[2], r[3], r[4]]),
    ("missing_date", lambda r: [r[0], r[1], "", r[3], r[4]]),
    ("missing_department", lambda r: [r[0], r[1], r[2], "", r[4]]),
    ("missing_job", lambda r: [r[0], r[1], r[2], r[3], ""]),
    ("invalid_type_id", lambda r: [f"{r[0]}a", r[1], r[2], r[3], r[4]]),
    ("out_of_range_id", lambda r: [f"-{r[0]}", r[1], r[2], r[3], r[4]]),
    ("out_of_range_job", lambda r: [r[0], r[1], r[2], r[3], "99999999999"]),
    ("blank_name", lambda r: [r[0], "   ", r[2], r[3], r[4]]),
    ("too_long_name", lambda r: [r[0], "N" * 201, r[2], r[3], r[4]]),
    ("impossible_date", lambda r: [r[0], r[1], "2021-02-30T10:00:00Z", r[3], r[4]]),
    ("date_without_zone", lambda r: [r[0], r[1], r[2].rstrip("Z"), r[3], r[4]]),
    ("date_not_iso", lambda r: [r[0], r[1], "07/27/2021 16:02", r[3], r[4]]),
    ("unknown_department", lambda r: [r[0], r[1], r[2], "999", r[4]]),
    ("unknown_job", lambda r: [r[0], r[1], r[2], r[3], "9999"]),
    ("extra_field", lambda r: [*r, "surplus"]),
]


def job_names(count: int = 183) -> list[str]:
    names = [root + level for level in _LEVELS for root in _JOB_ROOTS]
    return names[:count]


def employee_rows(
    count: int, seed: int = 2021, bad_ratio: float = 0.035, departments: int = 12, jobs: int = 183
) -> Iterator[list[str]]:
    """`count` employee lines; about bad_ratio of them invalid, cycling through BAD_KINDS
    plus repeats of an earlier id (duplicate_id)."""
    rng = random.Random(seed)
    bad_kinds = len(BAD_KINDS) + 1
    bad_seen = 0
    for employee_id in range(1, count + 1):
        hired = START + timedelta(seconds=rng.randrange(SPAN_SECONDS))
        row = [
            str(employee_id),
            f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            hired.strftime("%Y-%m-%dT%H:%M:%SZ"),
            str(rng.randint(1, departments)),
            str(rng.randint(1, jobs)),
        ]
        if employee_id > 1 and rng.random() < bad_ratio:
            kind = bad_seen % bad_kinds
            bad_seen += 1
            if kind == len(BAD_KINDS):  # a repeat of an earlier, probably valid, id
                row[0] = str(rng.randrange(1, employee_id))
            else:
                row = BAD_KINDS[kind][1](row)  # type: ignore[operator]
        yield row


def write_csv(path: Path, rows: Iterator[list[str]] | list[list[str]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def generate(
    out_dir: Path, employees: int = 2000, seed: int = 2021, bad_ratio: float = 0.035
) -> dict:
    """Write departments.csv, jobs.csv and hired_employees.csv into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = job_names()
    return {
        "departments.csv": write_csv(
            out_dir / "departments.csv", [[str(i), n] for i, n in enumerate(DEPARTMENTS, 1)]
        ),
        "jobs.csv": write_csv(out_dir / "jobs.csv", [[str(i), n] for i, n in enumerate(jobs, 1)]),
        "hired_employees.csv": write_csv(
            out_dir / "hired_employees.csv",
            employee_rows(employees, seed, bad_ratio, len(DEPARTMENTS), len(jobs)),
        ),
    }
