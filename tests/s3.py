"""A real S3 API server for the tests: S3Proxy (Maven Central, `make jars` puts it in .jars/s3proxy) with its
filesystem backend, on a free port, with keys of its own. Not a mock: Spark's S3A and MLflow's boto3 speak
the S3 protocol to it, signed with AWS signature v4, as they would to MinIO or AWS."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from jobs.dev.kafka_broker import free_port
from tests import servers


@dataclass
class S3Server:
    folder: Path
    port: int
    access_key: str
    secret_key: str = field(repr=False)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment a job needs to reach it (the keys, as production passes them)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self, secret_key: str | None = None):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> str:
        """Create a bucket through the S3 API; returns `s3a://name`."""
        self.client().create_bucket(Bucket=name)
        return f"s3a://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under a prefix."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def overrides(self) -> dict[str, object]:
        """Configuration keys that point a job at this server."""
        return {"s3.endpoint": self.endpoint, "s3.path_style_access": True, "s3.region": "us-east-1"}


def start(folder: Path) -> S3Server:
    jars = servers.jars("s3proxy")
    server = S3Server(folder, free_port(), "test-" + secrets.token_hex(4), secrets.token_urlsafe(24))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    properties = folder / "s3proxy.properties"
    # the keys reach S3Proxy as system properties of its command line, not in a file
    properties.write_text(
        "\n".join(
            (
                f"s3proxy.endpoint={server.endpoint}",
                "s3proxy.authorization=aws-v2-or-v4",
                "jclouds.provider=filesystem-nio2",
                f"jclouds.filesystem.basedir={folder / 'data'}",
            )
        )
        + "\n"
    )
    logback = folder / "logback.xml"  # S3Proxy's jar brings no logging configuration: logback would say everything
    logback.write_text(
        '<configuration><appender name="out" class="ch.qos.logback.core.ConsoleAppender"><encoder>'
        "<pattern>%d %level %logger: %msg%n</pattern></encoder></appender>"
        '<root level="WARN"><appender-ref ref="out"/></root></configuration>\n'
    )
    server.process = servers.launch(
        [
            "java",
            "-Xmx256m",
            f"-Dlogback.configurationFile={logback}",
            f"-Ds3proxy.identity={server.access_key}",
            f"-Ds3proxy.credential={server.secret_key}",
            "-cp",
            os.pathsep.join(jars),
            "org.gaul.s3proxy.Main",
            "--properties",
            str(properties),
        ],
        folder,
        "s3proxy.log",
    )

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", server.port)) == 0

    servers.wait_ready(server.process, listening, "S3Proxy", folder / "s3proxy.log", 60)
    return server


def stop(server: S3Server) -> None:
    servers.stop(server.process)
