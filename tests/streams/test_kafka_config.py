"""streams.kafka_config: the one place every Kafka client's security is built.

What the embedded broker (Tansu 0.6.0) allows testing here:

- **TLS** end to end: Tansu's own listener speaks plain TCP only (its ``--cert`` is
  accepted and ignored), so a real TLS server sits in front of it (the test CA's server
  certificate, client certificates required: mutual TLS), as a TLS-terminating proxy
  would in production, and the broker advertises that address. Every client connects
  through it: topic administration, the producer helper, a consumer, the broker
  watch, the controller loop, and a whole ``foresight worker`` (Faust) whose changelog
  topics are checked for their replication.
- **SASL**: Tansu with ``--authentication`` offers SCRAM-SHA-256/512 (and OAUTHBEARER)
  but not PLAIN, and its users can only be created through an already authenticated
  connection on its memory-only storage, so no login can succeed against it. What is
  tested against the broker: a client built from SASL settings starts a SASL handshake
  with the configured mechanism. The rest is a check of the configuration every client
  (and Faust) is built with.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams import kafka_config
from streams.admin import ensure_topics
from streams.broker import EmbeddedBroker, free_port
from streams.kafka_config import KafkaConfigError, client_kwargs
from streams.settings import Settings, describe
from streams.topics import Topics
from tests.waiting import wait_for

# -- certificates -------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, cn: str, ca: str = "ca", ext: str = "") -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    extra = []
    if ext:
        (d / f"{name}.ext").write_text(ext + "\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for ``localhost`` only (no IP address), a client
    certificate, and a second CA that signed none of them."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates (apt-get install openssl)")
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=foresight-test-{ca}", cwd=d)
    _issue(d, "server", "localhost", ext="subjectAltName=DNS:localhost")
    _issue(d, "client", "foresight-worker", ext="extendedKeyUsage=clientAuth")
    return d


# -- a TLS server in front of the real broker ---------------------------------------------------


class TlsTerminator:
    """Accepts TLS on ``port`` (server certificate, client certificate required) and relays
    the bytes to the broker, in a thread of its own."""

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext) -> None:
        self.upstream = upstream
        self.context = context
        self.port = free_port()
        self.handshakes_failed = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-terminator", daemon=True)

    def start(self) -> TlsTerminator:
        self._thread.start()
        assert self._ready.wait(10), "TLS terminator did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._on_error)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.handshakes_failed += 1  # a refused handshake: what the negative tests expect

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture(scope="module")
def tls_broker(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost:PORT``: the real broker behind mutual TLS (it advertises that address)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no connection
    port = free_port()
    term = TlsTerminator(("127.0.0.1", port), ctx)
    log = tmp_path_factory.mktemp("tls-broker") / "broker.log"
    broker = EmbeddedBroker(port=port, log_path=str(log), advertised=f"localhost:{term.port}").start()
    term.start()
    try:
        yield f"localhost:{term.port}"
    finally:
        term.stop()
        broker.stop()


def tls_settings(bootstrap: str, certs: Path, **changes: Any) -> Settings:
    return Settings(broker=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=str(certs / "ca.pem"),
                    kafka_ssl_certfile=str(certs / "client.pem"),
                    kafka_ssl_keyfile=str(certs / "client.key")).replace(**changes)


def list_topics(settings: Settings) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=5000)
        await asyncio.wait_for(admin.start(), 15)
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(run())


# -- the configuration each protocol builds -----------------------------------------------------


def test_plaintext_is_the_default_and_carries_no_tls_or_sasl():
    assert client_kwargs(Settings(broker="k:9092")) == {"bootstrap_servers": "k:9092",
                                                        "security_protocol": "PLAINTEXT"}
    assert kafka_config.faust_credentials(Settings(broker="k:9092")) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_settings_reach_the_clients_and_the_faust_worker(tmp_path, certs, protocol, mechanism):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import create_app

    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-file\n")  # as `kubectl create secret --from-file` may leave it
    settings = Settings(broker="k:9093", kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                        kafka_sasl_username="foresight", kafka_sasl_password_file=str(secret),
                        kafka_ssl_cafile=str(certs / "ca.pem"), data_dir=str(tmp_path / "data"),
                        model_key="k" * 32)
    kw = client_kwargs(settings)
    assert (kw["security_protocol"], kw["sasl_mechanism"]) == (protocol, mechanism)
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("foresight", "s3cret-from-a-file")
    assert ("ssl_context" in kw) == (protocol == "SASL_SSL")
    # the Faust worker's consumer, producer and changelog admin get the same, through its credentials
    app = create_app(settings)
    faust_kw = {k: v for k, v in credentials_to_aiokafka_auth(app.conf.broker_credentials,
                                                              app.conf.ssl_context).items() if v is not None}
    ours = {k: v for k, v in kw.items() if k != "bootstrap_servers"}
    assert faust_kw.keys() == ours.keys()
    for key in ours:
        if key == "ssl_context":
            assert faust_kw[key].get_ca_certs() == ours[key].get_ca_certs()
        else:
            assert faust_kw[key] == ours[key], key


def test_tls_settings_build_a_verifying_context(certs):
    ctx = client_kwargs(tls_settings("k:9093", certs))["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [dict(x[0] for x in c["subject"])["commonName"] for c in ctx.get_ca_certs()] == ["foresight-test-ca"]
    relaxed = client_kwargs(tls_settings("k:9093", certs, kafka_ssl_check_hostname=False))["ssl_context"]
    assert relaxed.verify_mode == ssl.CERT_REQUIRED and not relaxed.check_hostname
    creds = kafka_config.faust_credentials(tls_settings("k:9093", certs))
    assert type(creds).__name__ == "SSLCredentials" and creds.context.get_ca_certs() == ctx.get_ca_certs()


def test_the_password_file_wins_over_the_variable_and_the_variable_works_alone(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file")
    base = {"broker": "k:9093", "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}
    env = {f"FORESIGHT_{k.upper()}": v for k, v in base.items()}
    both = Settings.from_env({**env, "FORESIGHT_KAFKA_SASL_PASSWORD": "from-env",
                              "FORESIGHT_KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert client_kwargs(both)["sasl_plain_password"] == "from-file"
    alone = Settings.from_env({**env, "FORESIGHT_KAFKA_SASL_PASSWORD": "from-env"})
    assert client_kwargs(alone)["sasl_plain_password"] == "from-env"


def test_secrets_are_never_flags_nor_shown():
    from streams.cli import build_parser

    info = {i.name: i for i in describe()}
    for secret in ("kafka_sasl_password", "kafka_ssl_key_password"):
        assert info[secret].commands == (), secret
    help_text = "".join(build_parser()._subparsers._group_actions[0].choices[c].format_help()  # noqa: SLF001
                        for c in ("worker", "scaler", "produce", "demo"))
    assert "--kafka-sasl-password-file" in help_text and "--kafka-sasl-password " not in help_text
    assert "--kafka-ssl-key-password " not in help_text
    s = Settings(kafka_sasl_password="hunter2", kafka_ssl_key_password="hunter3")
    assert "hunter2" not in repr(s) and "hunter3" not in repr(s)


def test_a_missing_secret_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope" / "password"
    settings = Settings(broker="k:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_username="u",
                        kafka_sasl_password_file=str(missing))
    with pytest.raises(KafkaConfigError) as err:
        client_kwargs(settings)
    assert str(err.value) == (f"--kafka-sasl-password-file / FORESIGHT_KAFKA_SASL_PASSWORD_FILE: cannot read "
                              f"{missing} (No such file or directory); mount the secret there, or set "
                              "FORESIGHT_KAFKA_SASL_PASSWORD")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(KafkaConfigError, match=f"{empty} is empty; it should hold the secret"):
        client_kwargs(settings.replace(kafka_sasl_password_file=str(empty)))


def test_the_cli_reports_a_missing_secret_file_in_one_line_before_connecting(tmp_path, capsys, monkeypatch):
    from streams.cli import main

    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,value\n0,1\n")
    for k, v in {"FORESIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FORESIGHT_KAFKA_SASL_USERNAME": "u",
                 "FORESIGHT_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")}.items():
        monkeypatch.setenv(k, v)  # the process environment, as a deployment sets it
    code = main(["produce", "--input", str(trace), "--broker", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"foresight produce: --kafka-sasl-password-file / FORESIGHT_KAFKA_SASL_PASSWORD_FILE: "
                   f"cannot read {tmp_path / 'missing'} (No such file or directory); mount the secret there, "
                   "or set FORESIGHT_KAFKA_SASL_PASSWORD"]


def test_contradicting_security_settings_are_all_reported(certs):
    with pytest.raises(KafkaConfigError) as err:
        client_kwargs(Settings(broker="k", kafka_security_protocol="SASL_SSL", kafka_ssl_keyfile="k.pem"))
    assert str(err.value).count(";") == 2  # no user, no password, a key without its certificate
    with pytest.raises(KafkaConfigError, match="cannot load .*missing-ca.pem"):
        client_kwargs(tls_settings("k", certs, kafka_ssl_cafile=str(certs / "missing-ca.pem")))
    with pytest.raises(KafkaConfigError, match="cannot load the client certificate"):  # key of another cert
        client_kwargs(tls_settings("k", certs, kafka_ssl_keyfile=str(certs / "server.key")))


# -- against the real broker, through TLS -------------------------------------------------------


def test_every_client_works_over_mutual_tls(tls_broker, certs, prefix):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.lifecycle import BrokerWatch
    from streams.producer import AggregatingProducer

    settings = tls_settings(tls_broker, certs, topic_prefix=prefix)
    topics = Topics.from_settings(settings)
    ensure_topics(settings, topics.all(), 2)  # admin
    assert set(topics.all()) <= list_topics(settings)
    with AggregatingProducer(settings.broker, flush_every=0, settings=settings) as p:  # producer helper
        p.record_metric("tls/cpu", 0.5, ts=1000.0)
    cluster_id, seen = asyncio.run(BrokerWatch(settings, topics.all()).look())  # broker watch
    assert cluster_id and set(topics.all()) <= (seen or set())

    async def read_back() -> list[bytes]:  # a consumer, as the controller builds its own
        c = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([TopicPartition(topics.metrics, p) for p in (0, 1)])
            out: list[bytes] = []
            deadline = time.monotonic() + 20
            while not out and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=300)).values():
                    out += [m.value for m in msgs]
            return out
        finally:
            await c.stop()

    assert any(b"tls/cpu" in v for v in asyncio.run(read_back()))


def test_the_controller_reads_forecasts_and_publishes_decisions_over_mutual_tls(tls_broker, certs, prefix):
    import threading

    from kafka import KafkaProducer

    from scaler.reconcile import Reconciler
    from scaler.simulated import SimulatedCluster
    from streams.controller import ControllerLoop
    from tests.streams.test_controller import message, spec

    settings = tls_settings(tls_broker, certs, topic_prefix=prefix, partitions=1)
    topics = Topics.from_settings(settings)
    ensure_topics(settings, topics.all(), 1)
    r = Reconciler(SimulatedCluster(0), [spec("a")])
    loop = ControllerLoop(settings, r, from_beginning=True)
    thread = threading.Thread(target=lambda: asyncio.run(loop.run()), daemon=True)
    thread.start()
    try:
        p = KafkaProducer(**client_kwargs(settings), acks="all")  # as the producer helper builds it
        for i in range(3):
            p.send(topics.forecasts, key=b"a/rps", value=message("a/rps", 60.0 * i, 650))
        p.flush()
        p.close()
        # decided on, and each decision acknowledged by the broker over TLS
        assert wait_for(lambda: loop.decisions >= 3, 30), f"{loop.decisions} decisions published over TLS"
        assert r.last["default/a"].desired == 7
    finally:
        loop.stop()
        thread.join(timeout=10)


def test_tls_refuses_a_client_without_certificate_an_unknown_ca_and_a_wrong_host(tls_broker, certs):
    port = tls_broker.rsplit(":", 1)[1]
    assert list_topics(tls_settings(tls_broker, certs)) is not None  # the good configuration connects
    refused = {
        "plain TCP to a TLS port": Settings(broker=tls_broker),
        "no client certificate": tls_settings(tls_broker, certs, kafka_ssl_certfile="", kafka_ssl_keyfile=""),
        "a CA that signed nothing": tls_settings(tls_broker, certs, kafka_ssl_cafile=str(certs / "other-ca.pem")),
        "an address the certificate does not name": tls_settings(f"127.0.0.1:{port}", certs),
    }
    for why, settings in refused.items():
        with pytest.raises(Exception, match="Unable to bootstrap|Connection|closed") as err:  # noqa: PT011
            list_topics(settings)
        assert "KafkaConnectionError" in type(err.value).__name__, why
    # the hostname check is what refused the last one: without it the same address connects
    relaxed = tls_settings(f"127.0.0.1:{port}", certs, kafka_ssl_check_hostname=False)
    assert isinstance(list_topics(relaxed), set)


def test_a_worker_over_tls_creates_its_changelogs_with_the_replication(tls_broker, certs, prefix, start_worker):
    from tests.streams.test_admin import describe_topics

    settings = tls_settings(tls_broker, certs, topic_prefix=prefix, replication_factor=2)
    env = {k: v for k, v in settings.to_env().items() if k.startswith(("FORESIGHT_KAFKA_", "FORESIGHT_BROKER",
                                                                      "FORESIGHT_REPLICATION"))}
    start_worker(prefix, **env)
    changelogs = [f"{prefix}-app-{t}-changelog" for t in ("models", "series_view", "targets")]
    wait_for(lambda: set(changelogs) <= list_topics(settings), 60)
    found = describe_topics(settings, changelogs + [f"{prefix}.points"])
    for name in changelogs + [f"{prefix}.points"]:
        assert found.get(name, {}).get("replicas") == [2], (name, found)
        assert found[name]["min.insync.replicas"] == "2", name


# -- SASL against the broker: what Tansu allows -------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_the_configured_sasl_mechanism_is_what_the_broker_is_asked_for(broker, caplog, mechanism):
    # the embedded broker (no --authentication) offers no SASL mechanism at all: a client built
    # from these settings asks for the one configured and is told it is unsupported (error 33)
    caplog.set_level(logging.WARNING, logger="aiokafka")
    sasl = Settings(broker=broker, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username="u", kafka_sasl_password="p")
    with pytest.raises(Exception, match="Unable to bootstrap"):  # noqa: PT011
        list_topics(sasl)
    assert "UnsupportedSaslMechanismError" in caplog.text
    caplog.clear()
    assert isinstance(list_topics(Settings(broker=broker)), set)  # the same broker, without SASL
    assert "UnsupportedSaslMechanismError" not in caplog.text
