"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, pg_ctl, no durability.

Uses the server binaries on the machine (Debian's packages: PATH, /usr/local/bin,
/usr/lib/postgresql/*/bin). As root it runs them as the `postgres` user, since initdb and
pg_ctl refuse to run as root. Every wait is bounded; a failure raises PostgresError with the
server's log in the message.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

BINARIES = ("initdb", "pg_ctl", "postgres")
USER = "postgres"  # the superuser initdb creates, and the system user the server runs as under root
START_TIMEOUT = 60  # seconds pg_ctl waits for the server (its -t), and our own readiness wait
COMMAND_TIMEOUT = 120.0  # seconds any one initdb/pg_ctl call may take
# Settings for a server whose data may be lost: no fsync, no full pages, nothing on disk to wait for.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresError(RuntimeError):
    """The server could not be set up, started, restarted or stopped."""


def _version(postgres: Path) -> tuple[int, ...]:
    """(15, 18) from `postgres --version`; () when it does not answer."""
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(part) for part in found.groups() if part) if found else ()


@functools.cache
def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres of the newest PostgreSQL found, or None."""
    places: list[str] = []
    on_path = shutil.which("initdb")
    if on_path:
        places.append(os.path.dirname(on_path))
    places.append("/usr/local/bin")
    places.extend(glob.glob("/usr/lib/postgresql/*/bin"))
    best: tuple[tuple[int, ...], Path] | None = None
    for place in places:
        # initdb and pg_ctl look for `postgres` next to their resolved selves (symlinks followed),
        # so the folder that counts is the one the symlinks in /usr/local/bin point into.
        initdb = Path(place, "initdb")
        if not initdb.is_file():
            continue
        bindir = initdb.resolve().parent
        if not all(os.access(bindir / name, os.X_OK) for name in BINARIES):
            continue
        version = _version(bindir / "postgres")
        if version and (best is None or version > best[0]):
            best = (version, bindir)
    return best[1] if best else None


def _as_postgres_prefix() -> list[str] | None:
    """The command prefix that runs a command as the postgres user from root, or None."""
    for runuser in (shutil.which("runuser"), "/usr/sbin/runuser", "/sbin/runuser"):
        if runuser and os.access(runuser, os.X_OK):
            return [runuser, "-u", USER, "--"]
    su = shutil.which("su") or "/bin/su"
    if os.access(su, os.X_OK):
        return [su, USER, "-s", "/bin/sh", "-c"]  # the command follows as one quoted string
    return None


def _free_port() -> int:
    """A loopback port that was free a moment ago (the kernel's pick for a bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _enterable_by_all(path: Path) -> bool:
    """Whether every folder from / down to `path` lets other users through (o+x)."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in (path, *path.parents))


def _stop_quietly(pg_ctl_stop: list[str], base: str) -> None:
    """Last resort at interpreter exit: stop a server nobody stopped, and remove its folder."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(pg_ctl_stop, cwd=base, capture_output=True, timeout=30, check=False)
    shutil.rmtree(base, ignore_errors=True)


class PostgresServer:
    """One PostgreSQL server in its own temporary folder, on a free port of 127.0.0.1.

    `start()` sets it up and creates the database `fanslymotion` (`url`); `new_database(name)`
    gives each test a clean one; `restart()`, `stop()` and `log()` do what they say.
    """

    def __init__(self) -> None:
        self.port = 0
        self._base: Path | None = None
        self._last_log = ""
        self._finalizer: weakref.finalize[..., PostgresServer] | None = None

    @staticmethod
    def available() -> str | None:
        """None when a server can be started here, else why not."""
        if find_bindir() is None:
            return (
                "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not in PATH, "
                "/usr/local/bin or /usr/lib/postgresql/*/bin; install Debian's postgresql package"
            )
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(USER)
            except KeyError:
                return f"running as root, and there is no {USER!r} user to run the server as"
            if _as_postgres_prefix() is None:
                return f"running as root, and neither runuser nor su is there to become {USER!r}"
        return None

    @property
    def url(self) -> str:
        """postgresql://postgres@127.0.0.1:<port>/fanslymotion"""
        return self.database_url("fanslymotion")

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server (superuser postgres, trust auth)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{quote(name, safe='')}"

    @property
    def _data(self) -> Path:
        if self._base is None:
            raise PostgresError("the server is not started")
        return self._base / "data"

    @property
    def _logfile(self) -> Path:
        return self._data.parent / "server.log"

    def log(self) -> str:
        """The server's log so far (after stop(): as it was when stopped)."""
        if self._base is None:
            return self._last_log
        try:
            return self._logfile.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """initdb, fast throwaway settings, pg_ctl start, then CREATE DATABASE fanslymotion."""
        reason = self.available()
        if reason is not None:
            raise PostgresError(reason)
        if self._base is not None:
            raise PostgresError("the server is already started")
        self._base = self._make_base()
        # Should we never get to stop() (a killed session), the server goes at interpreter exit.
        self._finalizer = weakref.finalize(
            self, _stop_quietly, self._pg_ctl("-m", "immediate", "stop"), str(self._base)
        )
        try:
            self._setup()
        except BaseException:
            self._discard()
            raise

    def _setup(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        initdb = [str(bindir / "initdb"), "-D", str(self._data), "-U", USER]
        initdb += ["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        self._run(self._command(initdb), "initdb")
        with (self._data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# tests/pg_server.py\ninclude 'fanslymotion-tests.conf'\n")
        # A port free at bind time can be taken before the server binds it: then try another.
        for attempt in range(3):
            self.port = _free_port()
            self._write_settings()
            try:
                self._run_pg_ctl("start")
                break
            except PostgresError:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise
        self._wait_ready()
        self.new_database("fanslymotion")

    def restart(self) -> None:
        """pg_ctl restart -m fast (open connections are dropped), until it answers again."""
        self._run_pg_ctl("-m", "fast", "restart")
        self._wait_ready()

    def pause(self) -> None:
        """An outage: pg_ctl stop -m fast, keeping the data folder and the port for `resume`."""
        self._run_pg_ctl("-m", "fast", "stop")

    def resume(self) -> None:
        """The end of an outage: pg_ctl start on the same folder and port, until it answers."""
        self._run_pg_ctl("start")
        self._wait_ready()

    def down(self) -> bool:
        """Whether the server refuses connections (stopped by `pause`, say)."""
        try:
            with psycopg.connect(self.database_url("postgres"), connect_timeout=2):
                return False
        except psycopg.OperationalError:
            return True

    def stop(self) -> None:
        """pg_ctl stop -m immediate, then remove the temporary folder (the log is kept for
        log()). Immediate: the data is thrown away, so the shutdown checkpoint (seconds, with
        a database per test written) is not worth waiting for."""
        if self._base is None:
            return
        try:
            self._run_pg_ctl("-m", "immediate", "stop")
        except BaseException:
            self._discard()  # an immediate stop, so the folder does not go under a running server
            raise
        if self._finalizer is not None:
            self._finalizer.detach()
        self._discard()

    def _discard(self) -> None:
        """Keep the log, stop whatever still runs (immediate), remove the temporary folder."""
        self._last_log = self.log()
        if self._finalizer is not None:
            self._finalizer()  # does nothing once detached
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
        self._base = None

    def new_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE `name` (it must not exist yet), a copy of `template` when given
        (a file copy: far cheaper than creating a schema again); returns its URL."""
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            conn.execute(create)
        return self.database_url(name)

    def _make_base(self) -> Path:
        """The temporary folder (data/, server.log, the unix socket); the postgres user's under root."""
        root = os.geteuid() == 0
        parent = Path(tempfile.gettempdir())
        # The unix socket's path has a ~107 byte limit, and under root the postgres user must be
        # able to walk down to the folder: else fall back to /tmp.
        if len(str(parent)) > 60 or (root and not _enterable_by_all(parent)):
            parent = Path("/tmp")
        base = Path(tempfile.mkdtemp(prefix="fm-pg-", dir=parent))
        if root:
            user = pwd.getpwnam(USER)
            os.chown(base, user.pw_uid, user.pw_gid)
        return base

    def _write_settings(self) -> None:
        assert self._base is not None
        settings = {
            **SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": "'" + str(self._base).replace("'", "''") + "'",
        }
        path = self._data / "fanslymotion-tests.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if os.geteuid() == 0:
            user = pwd.getpwnam(USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _command(self, argv: list[str]) -> list[str]:
        """`argv` as it must run: as is, or as the postgres user when we are root."""
        if os.geteuid() != 0:
            return argv
        prefix = _as_postgres_prefix()
        assert prefix is not None  # available() checked it
        return [*prefix, shlex.join(argv)] if prefix[-1] == "-c" else [*prefix, *argv]

    def _pg_ctl(self, *args: str) -> list[str]:
        bindir = find_bindir()
        assert bindir is not None
        return self._command([str(bindir / "pg_ctl"), "-D", str(self._data), *args])

    def _run_pg_ctl(self, *args: str) -> None:
        """pg_ctl with `args` (the action last), waiting (bounded) for it to finish."""
        # The log file is named on every start, or the new server would write into our pipe.
        logged = ["-l", str(self._logfile)] if args[-1] in ("start", "restart") else []
        command = self._pg_ctl("-w", "-t", str(START_TIMEOUT), *logged, *args)
        self._run(command, f"pg_ctl {args[-1]}")

    def _run(self, command: list[str], what: str) -> None:
        # PG* variables of the developer's shell (PGDATA, PGPORT...) must not steer our server.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        try:
            done = subprocess.run(
                command,
                cwd=self._base,  # the postgres user may not be allowed into our working folder
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(self._explain(f"{what} took over {COMMAND_TIMEOUT:.0f} s")) from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise PostgresError(self._explain(f"{what} failed ({done.returncode}): {output}"))

    def _wait_ready(self) -> None:
        """Until the server answers SELECT 1, for START_TIMEOUT s at most."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.database_url("postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        self._explain(f"the server does not answer: {exc}")
                    ) from exc
            time.sleep(0.1)

    def _explain(self, message: str) -> str:
        return f"{message}\n--- server log ({self._logfile}) ---\n{self.log()}"
