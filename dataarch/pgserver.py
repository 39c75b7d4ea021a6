"""The embedded PostgreSQL cluster: find the server binaries, initdb, start, stop.

The cluster lives in one directory (data/, run/ for the unix socket, server.log).
PostgreSQL refuses to run as root, so when we are root every server command runs
through `runuser -u postgres`, and the directory must be reachable by that user:
when it is not (a 0700 parent such as a mktemp dir) or its socket path would be
too long for a unix socket, the cluster goes to /var/tmp and the requested path
becomes a symlink to it.

It belongs to whoever runs it: it listens on no TCP port, its socket is in a
directory only the server's user may enter, and it authenticates by peer
(the client's OS user, as the kernel reports it) through an ident map that
lets only the user who runs dataarch, the server's own user and root in, as
postgres or dataarch_api. Another local user is refused twice over.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dataarch.errors import Failure

PORT = 5432
SUPERUSER = "postgres"
# The database roles the map lets the cluster's owners be; a test or a user
# adds another with Cluster.map_role.
ROLES = (SUPERUSER, "dataarch_api")
_MAP = "dataarch"
_HBA_MARK = "# dataarch: peer authentication"
# unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.5432"
_MAX_SOCKET_DIR = 90
# Settings for a throwaway cluster (tests, benchmarks): durability is not wanted.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class ClusterError(Failure):
    """A problem with the embedded server, phrased for the user."""


def _is_root() -> bool:
    return os.geteuid() == 0


def find_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl: $PG_BINDIR, Debian's newest, then PATH."""
    if env := os.environ.get("PG_BINDIR"):
        return Path(env)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_server_binaries() -> Path:
    """Return the server bindir, installing Debian's package when we are root with apt."""
    bindir = find_bindir()
    if bindir:
        return bindir
    if _is_root() and shutil.which("apt-get"):
        print("PostgreSQL server not found; installing it with apt-get ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql", "postgresql-contrib"],
            check=True,
            env=env,
        )
        bindir = find_bindir()
        if bindir:
            return bindir
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them with "
        "`sudo apt-get install postgresql`, or set DATABASE_URL to an existing server."
    )


def _alive(pid: int) -> bool:
    """True for a running process; False for none, or for a zombie (dead, unreaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _runs_as_postgres(path: Path) -> bool:
    """True when the postgres user can reach (search) `path`."""
    probe = subprocess.run(
        ["runuser", "-u", SUPERUSER, "--", "test", "-x", str(path)], capture_output=True
    )
    return probe.returncode == 0


@dataclass
class Cluster:
    """One embedded cluster rooted at `root`; `durable=False` trades safety for speed."""

    root: Path
    port: int = PORT
    durable: bool = True
    # Citus nodes talk to each other over 127.0.0.1 (tests and bench only):
    # trusted there, as the loopback of a throwaway cluster
    trust_loopback: bool = False
    # ... or over a private network of network namespaces the bench made
    # (bench/netns.py): the server runs in `netns`, trusting `trusted_network`
    netns: str | None = None
    trusted_network: str | None = None

    def __post_init__(self) -> None:
        self.root = self.root.absolute()

    @property
    def home(self) -> Path:
        """The real directory: server commands must not walk through a symlink's parent."""
        return self.root.resolve()

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user}"

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    # -- running commands as the right user ----------------------------------------------

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server program, as the postgres user when we are root."""
        prefix = ["runuser", "-u", SUPERUSER, "--"] if _is_root() else []
        if self.netns:
            prefix = ["ip", "netns", "exec", self.netns, *prefix]
        proc = subprocess.run([*prefix, *argv], capture_output=True, text=True)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            log = f" (server log: {self.log_file})" if self.log_file.exists() else ""
            raise ClusterError(f"{Path(argv[0]).name} failed: {detail}{log}")
        return proc

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        pg_ctl = ensure_server_binaries() / "pg_ctl"
        return self._run([str(pg_ctl), *args, "-D", str(self.data_dir)], check=check)

    def _prepare_root(self) -> None:
        """Create the cluster directory so that the server's user owns and reaches it."""
        if self.root.is_symlink() or self.root.exists():
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        too_long = len(str(self.root / "run")) > _MAX_SOCKET_DIR
        if too_long or (_is_root() and not _runs_as_postgres(self.root.parent)):
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
            target = Path("/var/tmp") / f"dataarch-{digest}"
            target.mkdir(mode=0o755, exist_ok=True)
            self.root.symlink_to(target)
        else:
            self.root.mkdir(mode=0o755)
        if _is_root():
            shutil.chown(self.home, SUPERUSER, SUPERUSER)

    # -- lifecycle -----------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb once: UTF-8, C.UTF-8 collation, the unix socket only, peer
        authentication (_secure)."""
        if self.is_initialized():
            return
        bindir = ensure_server_binaries()
        self._prepare_root()
        self._run(
            [
                str(bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "-E", "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=reject",
            ]
        )  # fmt: skip
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0770",
            "port": str(self.port),
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        }
        if not self.durable:
            settings.update(FAST_SETTINGS)
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        self._append_conf(lines)

    def _append_conf(self, lines: str) -> None:
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as f:  # root may write it; ownership is unchanged
            f.write("\n# dataarch embedded cluster\n" + lines)
        self._make_socket_dir()

    def _make_socket_dir(self) -> None:
        """run/, where nobody but the server's user and its owner may reach
        the socket. Run by root, the server is the postgres user and the
        directory is postgres's with group root and setgid, so the socket
        (0770) is group root's too: root reaches it by its group, even
        without the capability to override permissions (a service's)."""
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if _is_root():
            shutil.chown(self.socket_dir, SUPERUSER, "root")
            self.socket_dir.chmod(0o2770)
        else:
            self.socket_dir.chmod(0o700)

    # -- who may connect ------------------------------------------------------------------

    def _os_users(self) -> list[str]:
        """The OS users the map lets in: who runs this, the server's own user, root."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        return sorted({me, "root", SUPERUSER if _is_root() else me})

    def _secure(self) -> bool:
        """Peer authentication through the ident map, and a socket directory
        only the server's user may enter; on a cluster of an earlier release
        (trust for everyone) too. Returns True when a file changed."""
        hba = self.data_dir / "pg_hba.conf"
        self._make_socket_dir()
        if hba.read_text().startswith(_HBA_MARK):
            return False
        lines = [
            f"{_HBA_MARK}: only the OS users pg_ident.conf maps (who runs this",
            "# cluster, its server's user and root) connect, over the unix socket.",
            f"local all all peer map={_MAP}",
        ]
        if self.trust_loopback:
            lines += ["host all all 127.0.0.1/32 trust", "host all all ::1/128 trust"]
        if self.trusted_network:
            lines += [f"host all all {self.trusted_network} trust"]
        hba.write_text("\n".join(lines) + "\n")  # root may write it; ownership is unchanged
        ident = [f"{_MAP} {user} {role}" for user in self._os_users() for role in ROLES]
        (self.data_dir / "pg_ident.conf").write_text("\n".join(ident) + "\n")
        conf = self.data_dir / "postgresql.conf"
        if not re.search(r"^unix_socket_permissions", conf.read_text(), re.M):
            self._append_conf("unix_socket_permissions = 0770\n")
        return True

    def map_role(self, role: str) -> None:
        """Let the cluster's OS users connect as `role` too (a role the
        project does not make: a test's, an analyst's)."""
        with (self.data_dir / "pg_ident.conf").open("a") as f:
            f.writelines(f"{_MAP} {user} {role}\n" for user in self._os_users())
        if self.is_running():
            self._pg_ctl("reload")

    def _lock_files(self) -> list[Path]:
        return [self.data_dir / "postmaster.pid", self.socket_dir / f".s.PGSQL.{self.port}.lock"]

    def postmaster_pid(self) -> int | None:
        """The server's main process, as its pid file says (it may be gone)."""
        pid_file = self.data_dir / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def _clear_stale_locks(self) -> None:
        """Remove lock files of a server that died (e.g. SIGKILL). PostgreSQL itself would
        refuse to start while their PID exists, and a killed postmaster whose parent
        never reaps it (PID 1 in many containers) lingers as a zombie."""
        for lock in self._lock_files():
            if lock.exists() and not _alive(int(lock.read_text().split()[0])):
                lock.unlink()

    def start(self) -> None:
        """Start the server (initialising it first) and wait until it accepts connections."""
        self.init()
        changed = self._secure()
        if self.is_running():
            if changed:
                self._pg_ctl("reload")
            return
        self._clear_stale_locks()
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
        deadline = time.monotonic() + 30
        while not (self.socket_dir / f".s.PGSQL.{self.port}").exists():
            if time.monotonic() > deadline:
                raise ClusterError(f"server started but no socket appeared; see {self.log_file}")
            time.sleep(0.05)

    def stop(self) -> None:
        if not self.is_running():
            return
        self._pg_ctl("stop", "-w", "-m", "fast")

    def kill(self) -> None:
        """SIGKILL the server and all its processes at once, as a crash would
        (fault-injection tests); the next start runs crash recovery."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        for pid in [postmaster, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in [postmaster, *children]):
            if time.monotonic() > deadline:
                raise ClusterError(f"server processes survived SIGKILL: {postmaster}")
            time.sleep(0.01)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        if self.root.is_symlink():
            self.root.unlink()

    def ensure_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            query = "select 1 from pg_database where datname = %s"
            if not conn.execute(query, (dbname,)).fetchone():
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
