"""The Prometheus client and what a result means, against a real Prometheus server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from streams.backfill import read_prometheus
from streams.broker import free_port
from streams.prometheus import (
    MAX_POINTS_PER_QUERY,
    PrometheusClient,
    PrometheusConfigError,
    PrometheusError,
    PrometheusSettings,
    chunks,
)
from tests.prometheus_fixture import METRIC, QUERY, known_value
from tests.waiting import retrying


def _starting(exc: Exception) -> bool:
    """A server still starting: unreachable, so try again."""
    return isinstance(exc, PrometheusError) and exc.reason == "unreachable"

pytestmark = pytest.mark.integration


@pytest.fixture
def client(prometheus) -> PrometheusClient:
    return PrometheusClient(PrometheusSettings(url=prometheus.url))


def test_query_range_reads_the_known_history_exactly_in_chunks(prometheus, client):
    start, end = prometheus.history_start, prometheus.history_end
    h = read_prometheus(client, QUERY, start, end, 1.0)
    n = int(end - start) + 1
    assert n > MAX_POINTS_PER_QUERY, "the fixture's history needs more than one query"
    assert h.queries == len(list(chunks(start, end, 1.0))) == 2
    assert not h.problems
    assert [t for t, _ in h.samples] == [start + k for k in range(n)], "every step once, in order"
    assert all(v == known_value(t) for t, v in h.samples), "the values written by promtool, exactly"


def test_one_query_is_never_asked_for_more_than_prometheus_answers(prometheus, client):
    with pytest.raises(ValueError, match="11000"):
        client.query_range(QUERY, 0, MAX_POINTS_PER_QUERY, 1.0)


@pytest.mark.parametrize(("query", "reason", "series"), [
    (f'{METRIC}{{job="nope"}}', "no_data", 0),                    # missing data
    ('vector(1) or label_replace(vector(2), "a", "b", "", "")', "several_series", 2),  # ambiguous
    (f"{METRIC} * 0 / 0", "non_numeric", 1),                      # NaN
    (f"{METRIC} / 0", "non_numeric", 1),                          # +Inf
    ('"text"', "non_numeric", 1),                                 # a string result
])
def test_what_an_instant_result_means(prometheus, client, query, reason, series):
    r = client.query(query, prometheus.history_end)
    assert (r.samples, r.reason, r.series) == ([], reason, series)


def test_a_range_keeps_finite_points_and_counts_the_rest(prometheus, client):
    t0 = prometheus.history_start
    q = f"{METRIC} / ({METRIC} > 100)"  # 1 where above 100, no point elsewhere: gaps, not zeros
    r = client.query_range(q, t0, t0 + 299, 1.0)
    above = [t0 + k for k in range(300) if known_value(t0 + k) > 100]
    assert [t for t, _ in r.samples] == above and all(v == 1.0 for _, v in r.samples)
    r = client.query_range(f"0 / ({METRIC} > 100 or {METRIC} * 0)", t0, t0 + 299, 1.0)
    assert [t for t, _ in r.samples] == above, "0/0 (NaN) is skipped"
    assert r.non_numeric == 300 - len(above) and r.reason is None, "... and counted"


def test_a_bad_query_and_an_outage_are_errors_with_a_reason(prometheus, client):
    with pytest.raises(PrometheusError) as e:
        client.query("sum(", prometheus.history_end)
    assert e.value.reason == "bad_query" and "parse error" in str(e.value)
    down = PrometheusClient(PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2))
    with pytest.raises(PrometheusError) as e:
        down.query(QUERY, prometheus.history_end)
    assert e.value.reason == "unreachable"
    with pytest.raises(PrometheusError) as e:  # a server that is not Prometheus
        PrometheusClient(PrometheusSettings(url=f"{prometheus.url}/nothing")).query(QUERY, 0)
    assert e.value.reason == "bad_response"


def test_credentials_come_from_files_or_variables_and_never_travel_in_clear_text(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    s = PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_BEARER_TOKEN_FILE": str(token)})
    assert s.bearer_token == "s3cret" and "s3cret" not in repr(s)
    assert PrometheusClient(s)._headers["Authorization"] == "Bearer s3cret"  # noqa: SLF001
    s = PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_USERNAME": "u",
                                     "FORESIGHT_PROMETHEUS_PASSWORD": "p"})
    assert PrometheusClient(s)._headers["Authorization"] == "Basic dTpw"  # noqa: SLF001
    remote = {"FORESIGHT_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
              "FORESIGHT_PROMETHEUS_BEARER_TOKEN": "x"}
    with pytest.raises(PrometheusConfigError, match="clear text"):
        PrometheusSettings.from_env(remote)
    assert PrometheusSettings.from_env({**remote, "FORESIGHT_PROMETHEUS_ALLOW_INSECURE": "true"}).bearer_token
    assert PrometheusSettings.from_env({**remote, "FORESIGHT_PROMETHEUS_URL": "https://p:9090"}).bearer_token
    with pytest.raises(PrometheusConfigError, match="no such file"):
        PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_CA_FILE": str(tmp_path / "none.pem")})
    with pytest.raises(PrometheusConfigError, match="BEARER_TOKEN_FILE"):
        PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_BEARER_TOKEN_FILE": str(tmp_path / "none")})


@contextlib.contextmanager
def _prometheus_serving(tmp_path, web_config: str) -> Iterator[int]:
    """A real Prometheus with this web config (``--web.config.file``: TLS, basic auth),
    listening on the port yielded; stopped after."""
    import subprocess

    from streams.broker import wait_for_port
    from tests.prometheus_fixture import require_prometheus

    prom, _ = require_prometheus()
    web = tmp_path / "web.yml"
    web.write_text(web_config)
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    port = free_port()
    proc = subprocess.Popen([prom, f"--config.file={config}", f"--web.config.file={web}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 60, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


def test_basic_auth_from_a_password_file_against_a_real_server_that_requires_it(tmp_path):
    import crypt  # deprecated (gone in 3.13), but the one bcrypt here without a new dependency
    import time

    hashed = crypt.crypt("pw-123", crypt.mksalt(crypt.METHOD_BLOWFISH))
    with _prometheus_serving(tmp_path, f"basic_auth_users:\n  foresight: '{hashed}'\n") as port:
        password = tmp_path / "password"
        password.write_text("pw-123\n")
        env = {"FORESIGHT_PROMETHEUS_URL": f"http://127.0.0.1:{port}",
               "FORESIGHT_PROMETHEUS_USERNAME": "foresight",
               "FORESIGHT_PROMETHEUS_PASSWORD_FILE": str(password)}
        good = PrometheusClient(PrometheusSettings.from_env(env))
        r = retrying(lambda: good.query("vector(42)", time.time()), _starting, 30)  # until the engine is ready
        assert r.samples and r.samples[0][1] == 42.0
        anonymous = PrometheusClient(PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_URL": env[
            "FORESIGHT_PROMETHEUS_URL"]}))
        wrong = PrometheusClient(PrometheusSettings.from_env({**env, "FORESIGHT_PROMETHEUS_PASSWORD_FILE": "",
                                                              "FORESIGHT_PROMETHEUS_PASSWORD": "nope"}))
        for client in (anonymous, wrong):
            with pytest.raises(PrometheusError) as e:
                client.query("vector(42)", time.time())
            assert e.value.reason == "bad_query" and "HTTP 401 (check the credentials)" in str(e.value)


def _make_certs(d) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl); the CA, cert and key."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make the test's certificates)")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    return str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key")


def test_https_with_a_ca_file_against_a_real_tls_server(tmp_path):
    import time

    ca, cert, key = _make_certs(tmp_path)
    with _prometheus_serving(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n") as port:
        url = f"https://127.0.0.1:{port}"
        trusted = PrometheusClient(PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_URL": url,
                                                                "FORESIGHT_PROMETHEUS_CA_FILE": ca}))
        r = retrying(lambda: trusted.query("vector(7)", time.time()), _starting, 30)  # until the engine is ready
        assert r.samples[0][1] == 7.0
        untrusted = PrometheusClient(PrometheusSettings.from_env({"FORESIGHT_PROMETHEUS_URL": url}))
        with pytest.raises(PrometheusError) as e:
            untrusted.query("vector(7)", time.time())
        assert e.value.reason == "tls" and "FORESIGHT_PROMETHEUS_CA_FILE" in str(e.value)


def test_without_the_binaries_the_fixture_skips_or_in_ci_fails(monkeypatch, tmp_path):
    from tests.prometheus_fixture import require_prometheus

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed here
    monkeypatch.delenv("FORESIGHT_REQUIRE_PROMETHEUS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        require_prometheus()
    monkeypatch.setenv("FORESIGHT_REQUIRE_PROMETHEUS", "1")
    with pytest.raises(pytest.fail.Exception, match="FORESIGHT_REQUIRE_PROMETHEUS=1 but Prometheus"):
        require_prometheus()
