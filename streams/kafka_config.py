"""Every Kafka client's connection and security configuration, built in one place.

The worker (Faust, through :func:`faust_credentials`), the controller, the
producer helper, topic administration, the broker watch and the CLI all
connect with :func:`client_kwargs`: bootstrap servers, ``security_protocol``,
a TLS context (CA file, client certificate and key, hostname check) and SASL
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). aiokafka and kafka-python take the
same keyword names, so one dict serves both.

Secrets are read here, when a client is built, from a file (a mounted
Kubernetes secret: ``FORESIGHT_KAFKA_SASL_PASSWORD_FILE``) or from the
environment (``FORESIGHT_KAFKA_SASL_PASSWORD``); never from a flag. A file
that cannot be read is a :class:`KafkaConfigError` naming the setting and the
file, before any connection is tried.

>>> client_kwargs(Settings(broker="k:9092"))
{'bootstrap_servers': 'k:9092', 'security_protocol': 'PLAINTEXT'}
>>> kw = client_kwargs(Settings(broker="k:9093", kafka_security_protocol="SASL_PLAINTEXT",
...                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc",
...                             kafka_sasl_password="pw"))
>>> kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]
('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'svc', 'pw')
>>> client_kwargs(Settings(broker="k:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
...                        kafka_sasl_password_file="/nonexistent/pw"))
Traceback (most recent call last):
...
streams.kafka_config.KafkaConfigError: --kafka-sasl-password-file / FORESIGHT_KAFKA_SASL_PASSWORD_FILE: cannot read /nonexistent/pw (No such file or directory); mount the secret there, or set FORESIGHT_KAFKA_SASL_PASSWORD
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings, SettingsError

#: security protocols that wrap the connection in TLS
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
#: security protocols that authenticate with SASL
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


class KafkaConfigError(SettingsError):
    """A Kafka security setting that cannot be used (a secret or certificate file that cannot
    be read, a key that does not match its certificate); the message names the setting."""


def read_secret(path: str, setting: str, env: str) -> str:
    """The secret in ``path`` without its trailing newline (as ``kubectl create secret`` and
    editors leave one). An unreadable or empty file is a :class:`KafkaConfigError`."""
    flag = "--" + setting.replace("_", "-")
    where = f"{flag} / FORESIGHT_{setting.upper()}"
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().rstrip("\r\n")
    except OSError as exc:
        raise KafkaConfigError(f"{where}: cannot read {path} ({exc.strerror or exc}); mount the secret "
                               f"there, or set {env}") from None
    if not value:
        raise KafkaConfigError(f"{where}: {path} is empty; it should hold the secret")
    return value


def sasl_password(settings: Settings) -> str:
    """The SASL password: the file wins over the environment variable."""
    if settings.kafka_sasl_password_file:
        return read_secret(settings.kafka_sasl_password_file, "kafka_sasl_password_file",
                           "FORESIGHT_KAFKA_SASL_PASSWORD")
    return settings.kafka_sasl_password


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every client, or None without TLS (PLAINTEXT, SASL_PLAINTEXT).

    Certificates are verified against ``kafka_ssl_cafile`` (else the system's CAs); the
    host name is checked unless ``kafka_ssl_check_hostname`` is off; with
    ``kafka_ssl_certfile`` the client presents its certificate (mutual TLS).
    """
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    cafile = settings.kafka_ssl_cafile or None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaConfigError(f"--kafka-ssl-cafile / FORESIGHT_KAFKA_SSL_CAFILE: cannot load {cafile} "
                               f"({_why(exc)}); it should be the PEM file of the brokers' CA") from None
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password or None
        if settings.kafka_ssl_key_password_file:
            password = read_secret(settings.kafka_ssl_key_password_file, "kafka_ssl_key_password_file",
                                   "FORESIGHT_KAFKA_SSL_KEY_PASSWORD")
        try:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None, password)
        except (OSError, ssl.SSLError) as exc:
            raise KafkaConfigError(
                f"--kafka-ssl-certfile / --kafka-ssl-keyfile ({settings.kafka_ssl_certfile}, "
                f"{settings.kafka_ssl_keyfile}): cannot load the client certificate ({_why(exc)}); "
                "they should be the PEM certificate and its key (and the key's password, if any)"
            ) from None
    return ctx


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka or kafka-python client: bootstrap servers and security.

    Read the secrets and certificates afresh on each call (a rotated secret is picked
    up by the next client built)."""
    problems = settings_problems(settings)
    if problems:
        raise KafkaConfigError("; ".join(problems))
    protocol = settings.kafka_security_protocol
    out: dict[str, Any] = {"bootstrap_servers": settings.broker, "security_protocol": protocol}
    ctx = ssl_context(settings)
    if ctx is not None:
        out["ssl_context"] = ctx
    if protocol in SASL_PROTOCOLS:
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_sasl_username
        out["sasl_plain_password"] = sasl_password(settings)
    return out


def settings_problems(settings: Settings) -> list[str]:
    """Kafka security settings that contradict each other, as sentences.

    >>> for p in settings_problems(Settings(kafka_security_protocol="SASL_SSL", kafka_ssl_keyfile="k.pem")):
    ...     print(p)
    --kafka-sasl-username / FORESIGHT_KAFKA_SASL_USERNAME is required with FORESIGHT_KAFKA_SECURITY_PROTOCOL=SASL_SSL
    no SASL password: mount it as a file and set --kafka-sasl-password-file / FORESIGHT_KAFKA_SASL_PASSWORD_FILE (or set FORESIGHT_KAFKA_SASL_PASSWORD)
    --kafka-ssl-keyfile / FORESIGHT_KAFKA_SSL_KEYFILE without --kafka-ssl-certfile: a client key needs its certificate
    """
    out = []
    protocol = settings.kafka_security_protocol
    if protocol not in ("PLAINTEXT", *TLS_PROTOCOLS, *SASL_PROTOCOLS):
        out.append(f"--kafka-security-protocol / FORESIGHT_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, "
                   f"SSL, SASL_PLAINTEXT, SASL_SSL; got {protocol!r}")
    if protocol in SASL_PROTOCOLS and not settings.kafka_sasl_username:
        out.append(f"--kafka-sasl-username / FORESIGHT_KAFKA_SASL_USERNAME is required with "
                   f"FORESIGHT_KAFKA_SECURITY_PROTOCOL={protocol}")
    if protocol in SASL_PROTOCOLS and not (settings.kafka_sasl_password_file or settings.kafka_sasl_password):
        out.append("no SASL password: mount it as a file and set --kafka-sasl-password-file / "
                   "FORESIGHT_KAFKA_SASL_PASSWORD_FILE (or set FORESIGHT_KAFKA_SASL_PASSWORD)")
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        out.append("--kafka-ssl-keyfile / FORESIGHT_KAFKA_SSL_KEYFILE without --kafka-ssl-certfile: "
                   "a client key needs its certificate")
    return out


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the same configuration (None: PLAINTEXT).

    Faust turns them back into aiokafka keyword arguments
    (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``) for its
    consumer, producer and admin requests (changelog topics); the tests check that
    they come out equal to :func:`client_kwargs`.
    """
    from faust.auth import SASLCredentials, SSLCredentials

    kw = client_kwargs(settings)
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        return SASLCredentials(username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                               ssl_context=kw.get("ssl_context"), mechanism=kw["sasl_mechanism"])
    if "ssl_context" in kw:
        return SSLCredentials(kw["ssl_context"])
    return None


def describe(settings: Settings) -> str:
    """The connection in words, without secrets, for log lines and error messages.

    >>> describe(Settings(broker="k:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
    ...                   kafka_sasl_mechanism="SCRAM-SHA-256", kafka_ssl_cafile="/etc/kafka/ca.pem"))
    'k:9093 (SASL_SSL, SCRAM-SHA-256 as svc, CA /etc/kafka/ca.pem)'
    >>> describe(Settings(broker="k:9092"))
    'k:9092 (PLAINTEXT)'
    """
    parts = [settings.kafka_security_protocol]
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        parts.append(f"{settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}")
    if settings.kafka_security_protocol in TLS_PROTOCOLS:
        parts.append(f"CA {settings.kafka_ssl_cafile}" if settings.kafka_ssl_cafile else "system CAs")
        if settings.kafka_ssl_certfile:
            parts.append(f"client certificate {settings.kafka_ssl_certfile}")
        if not settings.kafka_ssl_check_hostname:
            parts.append("no hostname check")
    return f"{settings.broker} ({', '.join(parts)})"


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
