"""Prometheus as a source: a small HTTP API client and the rules for what a result means.

:class:`PrometheusSettings` is read once from ``FORESIGHT_PROMETHEUS_*`` variables. The
server's address may also be a flag (``--prometheus-url``); credentials never are: a bearer
token, basic-auth password and TLS CA come from files or environment variables only, and a
URL with a user or password in it is refused. Credentials are not sent in clear text to a
server that is not on this host (``http://`` to a non-loopback address) unless
``FORESIGHT_PROMETHEUS_ALLOW_INSECURE=true``.

What a query result means is decided here, once, for ``foresight ingest`` and
``foresight backfill`` alike; nothing is ever invented:

===================  =====================================================  ===============
result               meaning                                                ``reason``
===================  =====================================================  ===============
one finite sample    the value at that time                                 (accepted)
no series            missing data: a gap, never a zero                      ``no_data``
several series       ambiguous: nothing is taken (aggregate it in PromQL)   ``several_series``
NaN, Inf, a string   not a load value: skipped                              ``non_numeric``
server unreachable,  an outage: retried at the next step                    ``unreachable``
5xx, timeout
4xx (bad query)      a configuration error                                  ``bad_query``
not the API's JSON   a proxy or another server answered                     ``bad_response``
TLS not trusted      the server's certificate does not verify (CA file?)    ``tls``
===================  =====================================================  ===============

>>> r = result_samples({"resultType": "vector", "result": [{"metric": {}, "value": [10, "1.5"]}]})
>>> r.samples, r.reason
([(10.0, 1.5)], None)
>>> result_samples({"resultType": "vector", "result": []}).reason
'no_data'
>>> r = result_samples({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "2"], [2, "NaN"]]}]})
>>> r.samples, r.non_numeric
([(1.0, 2.0)], 1)
>>> result_samples({"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1"]},
...                                                    {"metric": {"a": "2"}, "value": [1, "1"]}]}).reason
'several_series'
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: the most points Prometheus returns per series and query (it refuses more)
MAX_POINTS_PER_QUERY = 11_000
#: the fixed vocabulary of problems (also the ``reason`` label of the counters)
REASONS = ("no_data", "several_series", "non_numeric", "unreachable", "bad_query", "bad_response", "tls")


class PrometheusError(Exception):
    """A query that gave no usable answer; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


class PrometheusConfigError(ValueError):
    """A setting or credential file that cannot be used; the message says which."""


@dataclass(frozen=True)
class PrometheusSettings:
    """Where Prometheus is and how to authenticate (``FORESIGHT_PROMETHEUS_*``).

    >>> s = PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_URL": "http://prom:9090/"})
    >>> s.url, s.timeout_seconds
    ('http://prom:9090', 10.0)
    >>> PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_URL": "http://u:p@prom:9090"})
    Traceback (most recent call last):
    ...
    streams.prometheus.PrometheusConfigError: FORESIGHT_PROMETHEUS_URL must not carry a user or password; use FORESIGHT_PROMETHEUS_USERNAME and FORESIGHT_PROMETHEUS_PASSWORD_FILE
    """

    #: base URL of the Prometheus HTTP API (loopback by default)
    url: str = "http://127.0.0.1:9090"
    #: bearer token, read from a file (FORESIGHT_PROMETHEUS_BEARER_TOKEN_FILE) or the variable
    bearer_token: str = field(default="", repr=False)
    #: basic auth: user name and password (FORESIGHT_PROMETHEUS_PASSWORD_FILE or the variable)
    username: str = ""
    password: str = field(default="", repr=False)
    #: PEM file of the CA that signed the server's certificate (https)
    ca_file: str = ""
    #: seconds per HTTP request
    timeout_seconds: float = 10.0
    #: send credentials over http:// to a host that is not loopback
    allow_insecure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, url: str | None = None) -> PrometheusSettings:
        """Read the settings from ``env`` (default ``os.environ``); ``url`` (a flag) wins."""
        env = os.environ if env is None else env
        p = "FORESIGHT_PROMETHEUS_"
        base = (url or env.get(p + "URL") or cls.url).rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PrometheusConfigError(f"{p}URL / --prometheus-url {base!r}: expected http(s)://HOST:PORT")
        if parsed.username or parsed.password:
            raise PrometheusConfigError(f"{p}URL must not carry a user or password; use {p}USERNAME "
                                        f"and {p}PASSWORD_FILE")
        token = _secret(env, p + "BEARER_TOKEN")
        password = _secret(env, p + "PASSWORD")
        username = env.get(p + "USERNAME", "")
        if token and username:
            raise PrometheusConfigError(f"set either {p}BEARER_TOKEN(_FILE) or {p}USERNAME, not both")
        if password and not username:
            raise PrometheusConfigError(f"{p}PASSWORD(_FILE) is set but {p}USERNAME is not")
        ca = env.get(p + "CA_FILE", "")
        if ca and not Path(ca).is_file():
            raise PrometheusConfigError(f"{p}CA_FILE {ca}: no such file")
        try:
            timeout = float(env.get(p + "TIMEOUT_SECONDS", cls.timeout_seconds))
        except ValueError:
            raise PrometheusConfigError(f"{p}TIMEOUT_SECONDS must be a number of seconds") from None
        if not 0 < timeout <= 300:
            raise PrometheusConfigError(f"{p}TIMEOUT_SECONDS must be in (0, 300], got {timeout:g}")
        insecure = env.get(p + "ALLOW_INSECURE", "").lower() in ("1", "true", "yes", "on")
        s = cls(base, token, username, password, ca, timeout, insecure)
        if (token or username) and parsed.scheme == "http" and not _loopback(parsed.hostname) and not insecure:
            raise PrometheusConfigError(
                f"credentials would be sent in clear text to {base}: use https:// (and {p}CA_FILE), "
                f"or set {p}ALLOW_INSECURE=true")
        return s


def _secret(env: Mapping[str, str], name: str) -> str:
    """``NAME_FILE`` (a file's content, stripped) or ``NAME``; never a flag."""
    path = env.get(name + "_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise PrometheusConfigError(f"{name}_FILE {path}: {exc.strerror or exc}") from None
    return env.get(name, "")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Result:
    """Samples of a query's one series, and what was wrong with the rest."""

    samples: list[tuple[float, float]]
    #: why there is nothing (``no_data`` or ``several_series``), else None
    reason: str | None = None
    #: samples skipped as NaN, infinite or not a number
    non_numeric: int = 0
    series: int = 0


def _number(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def result_samples(data: Mapping[str, object]) -> Result:
    """The ``data`` of a query answer as samples of its one series (see the module doc)."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        x = _number(result[1])
        if x is None:
            return Result([], "non_numeric", 1, 1)
        return Result([(float(result[0]), x)], None, 0, 1)
    if kind == "string":
        return Result([], "non_numeric", 1, 1)
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise PrometheusError("bad_response", f"unexpected result type {kind!r}")
    if not result:
        return Result([], "no_data", 0, 0)
    if len(result) > 1:
        return Result([], "several_series", 0, len(result))
    one = result[0]
    if not isinstance(one, dict):
        raise PrometheusError("bad_response", "a result element is not an object")
    pairs = [one.get("value")] if kind == "vector" else one.get("values")
    if not isinstance(pairs, list):
        raise PrometheusError("bad_response", "a result has no values")
    out: list[tuple[float, float]] = []
    bad = 0
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise PrometheusError("bad_response", "a value is not a [time, value] pair")
        x = _number(pair[1])
        if x is None:
            bad += 1
        else:
            out.append((float(pair[0]), x))
    reason = "non_numeric" if bad and not out else None
    return Result(out, reason, bad, 1)


def chunks(start: float, end: float, step: float,
           max_points: int = MAX_POINTS_PER_QUERY) -> Iterator[tuple[float, float]]:
    """``[start, end]`` at ``step`` cut into ranges of at most ``max_points`` evaluation points.

    >>> list(chunks(0, 25, 1, max_points=10))
    [(0, 9), (10, 19), (20, 25)]
    >>> sum(int((b - a) / 5) + 1 for a, b in chunks(0, 86400, 5))
    17281
    """
    if step <= 0:
        raise ValueError("step must be > 0")
    span = (max_points - 1) * step
    t = start
    while t <= end:
        yield t, min(t + span, end)
        t = t + span + step


class PrometheusClient:
    """The HTTP API calls Foresight makes: instant and range queries (POST, form-encoded).

    Raises :class:`PrometheusError` (``unreachable``, ``bad_query``, ``bad_response``) when
    there is no answer to read; a readable answer is a :class:`Result`.
    """

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._headers = {"Accept": "application/json", "User-Agent": "foresight-ingest"}
        if settings.bearer_token:
            self._headers["Authorization"] = f"Bearer {settings.bearer_token}"
        elif settings.username:
            cred = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        self._ssl = ssl.create_default_context(cafile=settings.ca_file or None)

    def query(self, promql: str, at: float) -> Result:
        """The instant query ``promql`` evaluated at ``at`` (epoch seconds)."""
        return result_samples(self._post("/api/v1/query", {"query": promql, "time": f"{at:.3f}"}))

    def query_range(self, promql: str, start: float, end: float, step: float) -> Result:
        """``promql`` at ``start, start + step, ... <= end``: one call, at most 11,000 points."""
        if (end - start) / step + 1 > MAX_POINTS_PER_QUERY + 1e-9:
            raise ValueError(f"more than {MAX_POINTS_PER_QUERY} points in one query: use chunks()")
        return result_samples(self._post("/api/v1/query_range", {
            "query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}))

    def _post(self, path: str, form: dict[str, str]) -> Mapping[str, object]:
        url = self.settings.url + path
        body = urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(url, data=body, headers={
            **self._headers, "Content-Type": "application/x-www-form-urlencoded"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout_seconds,  # noqa: S310
                                        context=self._ssl if url.startswith("https") else None) as r:
                raw = r.read()
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc.read())
            if exc.code in (400, 422):
                raise PrometheusError("bad_query", f"{url}: HTTP {exc.code}: {detail}") from None
            if exc.code in (401, 403):
                raise PrometheusError("bad_query", f"{url}: HTTP {exc.code} (check the credentials): "
                                      f"{detail}") from None
            if exc.code in (404,):
                raise PrometheusError("bad_response", f"{url}: HTTP 404: is this a Prometheus "
                                      "server?") from None
            raise PrometheusError("unreachable", f"{url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            if isinstance(why, ssl.SSLError):
                raise PrometheusError("tls", f"{url}: TLS: {getattr(why, 'verify_message', None) or why}; "
                                      "set FORESIGHT_PROMETHEUS_CA_FILE to the CA that signed the "
                                      "server's certificate") from None
            raise PrometheusError("unreachable", f"{url}: {why}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise PrometheusError("bad_response", f"{url}: the answer is not JSON") from None
        if not isinstance(answer, dict) or answer.get("status") != "success" or not isinstance(
                answer.get("data"), dict):
            raise PrometheusError("bad_response", f"{url}: {_error_text(raw)}")
        return answer["data"]


def _error_text(raw: bytes) -> str:
    try:
        o = json.loads(raw)
        return str(o.get("error") or o)[:300]
    except ValueError:
        return raw[:200].decode("utf-8", "replace")
