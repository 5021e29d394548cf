"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries (`make postgresql` installs them if
missing), a fresh data folder, a free port on 127.0.0.1, password authentication over TCP, run as an
unprivileged user (`nobody` when the tests run as root: PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"


class PostgresMissingError(RuntimeError):
    pass


def server_bin() -> Path:
    """The folder of Debian's PostgreSQL server binaries (the newest version installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise PostgresMissingError(
            "PostgreSQL's server binaries: expected /usr/lib/postgresql/<version>/bin/initdb, "
            "found none; run `make postgresql` (Debian's postgresql package)"
        )
    return Path(found[-1]).parent


def _as_owner(command: list[str]) -> list[str]:
    """`command` run as the unprivileged user when this process is root, else as is."""
    if os.geteuid() != 0:
        return command
    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *command]


@dataclass
class Cluster:
    folder: Path
    port: int
    password: str  # the superuser's

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def connect(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=database, user=user, password=password or self.password
        )

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A role and a database it owns; returns the URI without its password (libpq reads PGPASSWORD)."""
        from psycopg import sql

        with self.connect() as connection:
            connection.autocommit = True
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner), sql.Literal(password))
            )
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
            )
        return f"postgresql://{owner}@127.0.0.1:{self.port}/{name}"


def start(port: int) -> Cluster:
    """initdb a new cluster in a fresh folder and start it on 127.0.0.1:`port`."""
    binaries = server_bin()
    folder = Path(tempfile.mkdtemp(prefix="fraud-postgres-"))
    cluster = Cluster(folder, port, secrets.token_urlsafe(16))
    password_file = folder / "superuser-password"
    password_file.write_text(cluster.password + "\n")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        os.chown(password_file, nobody.pw_uid, nobody.pw_gid)
    password_file.chmod(0o600)
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run(
        _as_owner(
            [
                str(binaries / "initdb"),
                "-D",
                str(cluster.data),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        ),
        **run,
    )
    password_file.unlink()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        subprocess.run(
            _as_owner(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(cluster.data),
                    "-o",
                    options,
                    "-l",
                    str(folder / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            **run,
        )
    except subprocess.CalledProcessError as error:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start on port {port}: {error.stderr}\n{log[-2000:]}") from error
    return cluster


def stop(cluster: Cluster) -> None:
    subprocess.run(
        _as_owner([str(server_bin() / "pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
    )
    shutil.rmtree(cluster.folder, ignore_errors=True)
