"""Settings, read from the environment once, by whoever starts the program.

One way to find the database: DATABASE_URL (a libpq URL), else the standard
PG* variables (libpq reads them itself), else the embedded cluster under var/.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DBNAME = "dataarch"
API_ROLE = "dataarch_api"
# libpq variables that say "a server is configured"; PGPASSWORD alone does not.
_PG_LOCATION_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


@dataclass(frozen=True)
class Settings:
    project_dir: Path = PROJECT_DIR
    var_dir: Path = PROJECT_DIR / "var"
    database_url: str | None = None
    use_pg_env: bool = False
    api_database_url: str | None = None
    tokens: tuple[ApiToken, ...] = ()
    backup_dir: Path = PROJECT_DIR / "var" / "backups"
    reports_dir: Path = PROJECT_DIR / "var" / "reports"
    database_password: str | None = None
    api_database_password: str | None = None
    log_file: Path | None = None
    lock_timeout: float = 10.0  # seconds a restore waits for its tables' locks
    upload_max_bytes: int = 1 << 30  # the largest CSV body POST /tables/{table}/csv takes
    # failed token checks or sign-ins a client address may make in a minute
    auth_failure_limit: int = 20
    # seconds an upload's body may send nothing before it is cut off
    upload_idle_timeout: float = 30.0
    # what sessions call themselves (pg_stat_activity; a busy table's message)
    application_name: str = "dataarch"
    # sessions that judge a large CSV file at once: one a core by default
    migrate_sessions: int = os.cpu_count() or 1

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """The admin tokens (what DATAARCH_API_TOKEN names)."""
        return tuple(t.value for t in self.tokens if t.scope == "admin")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        var_dir = Path(environ.get("DATAARCH_VAR_DIR", PROJECT_DIR / "var")).absolute()
        return cls(
            var_dir=var_dir,
            backup_dir=Path(environ.get("DATAARCH_BACKUP_DIR", var_dir / "backups")).absolute(),
            reports_dir=Path(environ.get("DATAARCH_REPORTS_DIR", var_dir / "reports")).absolute(),
            database_password=_secret(environ, "DATABASE_PASSWORD_FILE"),
            api_database_password=_secret(environ, "DATAARCH_API_DB_PASSWORD_FILE"),
            log_file=Path(environ["DATAARCH_LOG_FILE"])
            if environ.get("DATAARCH_LOG_FILE")
            else None,
            database_url=environ.get("DATABASE_URL") or None,
            use_pg_env=any(environ.get(name) for name in _PG_LOCATION_VARS),
            api_database_url=environ.get("DATAARCH_API_DATABASE_URL") or None,
            tokens=_api_tokens(environ),
            lock_timeout=_number(environ, "DATAARCH_LOCK_TIMEOUT", 10.0),
            upload_max_bytes=int(_number(environ, "DATAARCH_UPLOAD_MAX_BYTES", 1 << 30, int)),
            auth_failure_limit=int(_number(environ, "DATAARCH_AUTH_FAILURE_LIMIT", 20, int)),
            upload_idle_timeout=_number(environ, "DATAARCH_UPLOAD_IDLE_TIMEOUT", 30.0),
            migrate_sessions=int(
                _number(environ, "DATAARCH_MIGRATE_SESSIONS", os.cpu_count() or 1, int)
            ),
        )

    @property
    def embedded(self) -> bool:
        """True when no external server is configured."""
        return not (self.database_url or self.use_pg_env)

    @property
    def cluster_dir(self) -> Path:
        return self.var_dir / "pg"

    @property
    def data_dir(self) -> Path:
        return self.project_dir / "data" / "historical"

    @property
    def log_path(self) -> Path:
        """Where the JSON log goes: DATAARCH_LOG_FILE, else var/log/dataarch.log."""
        return self.log_file or self.var_dir / "log" / "dataarch.log"

    @property
    def address_file(self) -> Path:
        """Where `serve` writes the address it serves on, for the client commands."""
        return self.var_dir / "api-url"

    @property
    def token_file(self) -> Path:
        """Where `make run` keeps the token it generated when none was given."""
        return self.var_dir / "api-token"

    def with_generated_token(self) -> Settings:
        """These settings with the admin token kept in var/api-token as well,
        made once (mode 0600) when no admin token is configured: setting one
        token (a viewer's, say) never disables another."""
        path = self.token_file
        if not path.exists():
            if self.api_tokens:
                return self
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        kept = ApiToken(path.read_text().strip(), "admin")
        if not kept.value or kept in self.tokens:
            return self
        return dataclasses.replace(self, tokens=(*self.tokens, kept))


class SettingsError(ValueError):
    """An environment variable names something unusable; the message says which."""


def _read(name: str, path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}={path}: cannot read it ({exc.strerror.lower()})") from None


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    """The content of the file a *_FILE variable names (Docker secrets), stripped."""
    path = environ.get(name)
    return _read(name, path).strip() if path else None


def _number(environ: Mapping[str, str], name: str, default: float, kind: type = float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be more than 0")
    return value


# Scopes, each allowing what the ones before it do: view (the reports and
# KPIs, what a stakeholder signs in to see), read (rows, rejections), ingest
# (post rows and CSV), admin (backups, restores, closing rejections). The
# variable that names each scope's tokens:
SCOPES = ("view", "read", "ingest", "admin")
_TOKEN_VARIABLES = {
    "admin": "DATAARCH_API_TOKEN",
    "ingest": "DATAARCH_INGEST_TOKEN",
    "read": "DATAARCH_READ_TOKEN",
    "view": "DATAARCH_VIEWER_TOKEN",
}


@dataclass(frozen=True)
class ApiToken:
    value: str
    scope: str

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def _api_tokens(environ: Mapping[str, str]) -> tuple[ApiToken, ...]:
    """Each scope's variable, else the file named by the variable + _FILE
    (Docker secrets); either may hold several tokens, separated by commas or
    newlines."""
    tokens = []
    for scope, name in _TOKEN_VARIABLES.items():
        raw = environ.get(name, "")
        if not raw and (path := environ.get(f"{name}_FILE")):
            raw = _read(f"{name}_FILE", path)
        tokens += [
            ApiToken(t.strip(), scope) for t in raw.replace(",", "\n").splitlines() if t.strip()
        ]
    return tuple(tokens)
