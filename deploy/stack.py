"""Local stack launcher: real Apache Kafka (KRaft, jars from Maven Central) and redis-server.

Works without a Docker engine. Each server runs in its own process group on a loopback
port, with data under a state dir; `down` stops the groups and leaves nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from streams.errors import StackError

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).parent / "kafka" / "pom.xml"
LOOPBACK = "127.0.0.1"
SASL_USER = "slatestream"


@dataclass
class StackState:
    """What `stack up` started: addresses and process ids, persisted as JSON in the state dir."""

    kafka_bootstrap: str
    redis_url: str
    kafka_pid: int
    redis_pid: int
    root: str
    # `up(secure=True)`: a second Kafka listener, SASL_SSL (SCRAM-SHA-512 or PLAIN), and a TLS
    # port of Redis, with certificates from their own CA
    secure_bootstrap: str | None = None
    ssl_cafile: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    secure_redis_url: str | None = None

    def env_lines(self, secure: bool = False) -> str:
        """Lines a shell can eval: the settings the workers, demo and bench read (with
        `secure`, those of the SASL_SSL listener)."""
        if not secure:
            return (
                f"export SLATESTREAM_KAFKA_BOOTSTRAP={self.kafka_bootstrap}\n"
                f"export SLATESTREAM_REDIS_URL={self.redis_url}"
            )
        return "\n".join(f"export SLATESTREAM_{k}={v}" for k, v in self.secure_env().items())

    def secure_env(self) -> dict[str, str]:
        """The settings (without the prefix) of the SASL_SSL listener and of Redis over TLS;
        StackError when the stack was started without them."""
        if not (
            self.secure_bootstrap
            and self.ssl_cafile
            and self.sasl_password
            and self.secure_redis_url
        ):
            raise StackError("this stack has no SASL_SSL listener (start it with --secure)")
        return {
            "KAFKA_BOOTSTRAP": self.secure_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": self.sasl_username or SASL_USER,
            "KAFKA_SASL_PASSWORD": self.sasl_password,
            "KAFKA_SSL_CAFILE": self.ssl_cafile,
            "REDIS_URL": self.secure_redis_url,
        }


def default_state_dir() -> Path:
    """`$SLATESTREAM_STATE_DIR` or ~/.cache/slatestream."""
    env = os.environ.get("SLATESTREAM_STATE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "slatestream"


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_taken(port: int) -> bool:
    """True when something already listens on (or holds) the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: float = 900) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise StackError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def ensure_java() -> str:
    """Path of `java`, or a clear error."""
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found: Kafka needs Java 17+ (apt-get install openjdk-17-jre)")
    return java


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Resolve the official Kafka broker jars with `mvn` into a cache dir (once)."""
    cache = (cache_dir or default_state_dir()) / f"kafka-{KAFKA_VERSION}-jars"
    marker = cache / ".complete"
    if marker.exists():
        return cache
    if shutil.which("mvn") is None:
        raise StackError("mvn not found: needed once to fetch Kafka jars (apt-get install maven)")
    cache.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={cache}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}",
        ],
        "resolving Kafka jars from Maven Central",
    )
    if not any(cache.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise StackError(f"mvn ran but kafka_2.13-{KAFKA_VERSION}.jar is not in {cache}")
    marker.write_text(KAFKA_VERSION)
    return cache


def ensure_redis_server() -> str:
    """Path of `redis-server`; installs Debian's package when missing and we are root."""
    path = shutil.which("redis-server")
    if path:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError("redis-server not found: install it (apt-get install redis-server)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")
    path = shutil.which("redis-server")
    if not path:
        raise StackError("redis-server still missing after apt-get install")
    return path


def new_cluster_id() -> str:
    """A KRaft cluster id (a UUID in URL-safe base64, as `kafka-storage random-uuid` prints)
    that does not start with '-': the storage tool's argument parser would take such an id
    for an option ("--cluster-id/-t: expected one argument"), 1 start in 64."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class TlsFiles(NamedTuple):
    """PEM files of `_tls_files`: the CA clients trust, the servers' certificate and key, and
    Kafka's PEM keystore (key, then the certificate chain)."""

    ca: Path
    cert: Path
    key: Path
    keystore: Path


def _tls_files(root: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it (openssl,
    EC P-256, 30 days), for the broker's and Redis's TLS ports."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("openssl not found (apt-get install openssl): needed by --secure")
    tls = root / "tls"
    tls.mkdir(parents=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = tls / "ca.pem", tls / "ca.key"
    _run(
        [
            openssl,
            "req",
            "-x509",
            *key,
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-days",
            "30",
            "-subj",
            "/CN=slatestream local CA",
        ],
        "creating a CA",
    )
    csr, srv_key, srv_crt = tls / "broker.csr", tls / "broker.key", tls / "broker.crt"
    _run(
        [openssl, "req", *key, "-keyout", str(srv_key), "-out", str(csr), "-subj", "/CN=localhost"],
        "creating the broker's key",
    )
    ext = tls / "san.ext"
    ext.write_text(f"subjectAltName=IP:{LOOPBACK},DNS:localhost\n")
    _run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(srv_crt),
            "-days",
            "30",
            "-extfile",
            str(ext),
        ],
        "signing the broker's certificate",
    )
    keystore = tls / "broker-keystore.pem"
    keystore.write_text(srv_key.read_text() + srv_crt.read_text() + ca.read_text())
    ca_key.unlink()
    return TlsFiles(ca, srv_crt, srv_key, keystore)


def _secure_listener(keystore: Path, password: str) -> dict[str, str]:
    """Broker settings of the SASL_SSL listener: SCRAM-SHA-512 (credentials stored when the
    storage is formatted) and PLAIN, one user, TLS from a PEM keystore."""
    name = "listener.name.sasl_ssl"
    return {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        f"{name}.ssl.keystore.type": "PEM",
        f"{name}.ssl.keystore.location": str(keystore),
        f"{name}.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{name}.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{SASL_USER}="{password}";'
        ),
    }


def _kafka_config(
    root: Path,
    port: int,
    controller_port: int,
    secure_port: int | None = None,
    secure: dict[str, str] | None = None,
) -> Path:
    """server.properties of a one-node KRaft cluster; with `secure_port`, also the SASL_SSL
    listener there, configured by `secure` (`_secure_listener`)."""
    listeners = f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}"
    advertised = f"PLAINTEXT://{LOOPBACK}:{port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if secure_port is not None:
        listeners += f",SASL_SSL://{LOOPBACK}:{secure_port}"
        advertised += f",SASL_SSL://{LOOPBACK}:{secure_port}"
        protocols += ",SASL_SSL:SASL_SSL"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        **(secure or {}),
        "log.dirs": str(root / "kafka-data"),
        "num.partitions": "4",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    path = root / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (root / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.server.KafkaServer=INFO\n"
        "log4j.logger.kafka.server.BrokerServer=INFO\n"
    )
    return path


def _spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); treat it as dead
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group of pid, then SIGKILL what is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_kafka(
    bootstrap: str,
    timeout: float = 90.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Block until the broker answers a metadata request, or raise StackError."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # refused connects are expected here
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-800:] if log and log.exists() else ""
            raise StackError(f"Kafka exited with {proc.returncode}: {tail.strip()[-400:]}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError as exc:
            last = repr(exc)
            time.sleep(0.3)
            continue
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise StackError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s ({last})")


def wait_redis(url: str, timeout: float = 30.0) -> None:
    """Block until Redis answers PING, or raise StackError."""
    import redis

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            client = redis.Redis.from_url(url, socket_timeout=2)
            if client.ping():
                client.close()
                return
        except (redis.RedisError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise StackError(f"Redis at {url} did not answer within {timeout:.0f}s ({last})")


def _state_file(state_dir: Path) -> Path:
    return state_dir / "stack" / "stack.json"


def read_state(state_dir: Path | None = None) -> StackState | None:
    """The running stack recorded in the state dir, or None."""
    path = _state_file(state_dir or default_state_dir())
    if not path.exists():
        return None
    try:
        state = StackState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    # a pid of 0 or 1 (or not a number) would make status/down signal our own process group
    # or init: such a record is as unusable as an unreadable one
    for pid in (state.kafka_pid, state.redis_pid):
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
            return None
    return state


def status(state_dir: Path | None = None) -> dict[str, bool] | None:
    """Which recorded servers are alive, or None when no stack is recorded."""
    state = read_state(state_dir)
    if state is None:
        return None
    return {"kafka": _alive(state.kafka_pid), "redis": _alive(state.redis_pid)}


def up(
    state_dir: Path | None = None,
    kafka_port: int | None = None,
    redis_port: int | None = None,
    timeout: float = 120.0,
    secure: bool = False,
) -> StackState:
    """Start Kafka (KRaft) and redis-server on loopback; reuse a stack that is already up.
    `secure` adds a SASL_SSL listener (own CA, one SCRAM-SHA-512/PLAIN user) beside PLAINTEXT."""
    state_dir = state_dir or default_state_dir()
    current = read_state(state_dir)
    if current is not None:
        alive = status(state_dir) or {}
        if all(alive.values()):
            if secure and current.secure_redis_url is None:
                raise StackError(
                    "a stack without --secure is running in this state dir: stop it first "
                    "(slatestream stack down)"
                )
            return current
        down(state_dir)
    for name, port in (("Kafka", kafka_port), ("Redis", redis_port)):
        if port is not None and port_taken(port):
            raise StackError(f"{name} port {port} on {LOOPBACK} is taken; choose another")
    java = ensure_java()
    jars = ensure_kafka_jars(state_dir)
    redis_bin = ensure_redis_server()

    root = state_dir / "stack"
    if root.exists():
        shutil.rmtree(root)
    (root / "redis-data").mkdir(parents=True)
    kport = kafka_port or free_port()
    cport = free_port()
    rport = redis_port or free_port()
    tls = _tls_files(root) if secure else None
    password = secrets.token_urlsafe(18) if secure else None
    sport = free_port() if secure else None  # the SASL_SSL listener
    rtls_port = free_port() if secure else None  # Redis's TLS port
    listener = _secure_listener(tls.keystore, password) if tls and password else None
    props = _kafka_config(root, kport, cport, sport, listener)
    redis_tls: list[str] = []
    if tls is not None:
        redis_tls = [
            "--tls-port", str(rtls_port), "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip
    cluster_id = new_cluster_id()
    classpath = f"{jars}/*"
    jvm = [
        java,
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{root / 'log4j.properties'}",
        "-cp",
        classpath,
    ]
    scram = (
        ["--add-scram", f"SCRAM-SHA-512=[name={SASL_USER},password={password}]"]
        if password is not None
        else []
    )
    _run(
        [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram],
        "formatting Kafka storage",
        timeout=120,
    )

    redis_proc = _spawn(
        [
            redis_bin,
            "--port",
            str(rport),
            "--bind",
            LOOPBACK,
            "--dir",
            str(root / "redis-data"),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            *redis_tls,
        ],
        root / "redis.log",
        root,
    )
    kafka_proc = _spawn([*jvm, "kafka.Kafka", str(props)], root / "kafka.log", root)
    state = StackState(
        kafka_bootstrap=f"{LOOPBACK}:{kport}",
        redis_url=f"redis://{LOOPBACK}:{rport}/0",
        kafka_pid=kafka_proc.pid,
        redis_pid=redis_proc.pid,
        root=str(root),
        secure_bootstrap=f"{LOOPBACK}:{sport}" if secure else None,
        ssl_cafile=str(tls.ca) if tls else None,
        sasl_username=SASL_USER if secure else None,
        sasl_password=password,
        secure_redis_url=(
            f"rediss://{LOOPBACK}:{rtls_port}/0?ssl_ca_certs={tls.ca}" if tls else None
        ),
    )
    path = _state_file(state_dir)
    path.touch(mode=0o600)  # it may hold the SASL password of the secured listener
    path.write_text(json.dumps(asdict(state)))
    try:
        wait_redis(state.redis_url, timeout=30)
        if state.secure_redis_url:
            wait_redis(state.secure_redis_url, timeout=30)
        wait_kafka(state.kafka_bootstrap, timeout=timeout, proc=kafka_proc, log=root / "kafka.log")
    except BaseException:
        down(state_dir)
        raise
    return state


def down(state_dir: Path | None = None) -> bool:
    """Stop the recorded stack cleanly (SIGTERM, then SIGKILL); True if something was stopped."""
    state_dir = state_dir or default_state_dir()
    state = read_state(state_dir)
    if state is None:
        return False
    for pid in (state.kafka_pid, state.redis_pid):
        _stop_group(pid)
    _state_file(state_dir).unlink(missing_ok=True)
    return True
