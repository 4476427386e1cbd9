"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

Skips where no Chromium is installed, unless ``FORESIGHT_REQUIRE_BROWSER=1``
(CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT, send_raw
from tests.streams.test_web import T0, VS_HPA, WINDOW, decision, poll, produce, series_path

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
# the forecast band's fill, rgba(230,159,0,0.22), as the (transparent) canvas holds it
BAND_RGBA = (230, 159, 0, 56)
SCALERS = """\
apiVersion: foresight.dev/v1alpha1
kind: PredictiveScaler
metadata: {name: checkout, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  series: checkout/requests
  capacityPerReplica: 120
  minReplicas: 2
  maxReplicas: 60
  leadTimeSeconds: 180
"""


def chromium_or_skip() -> str:
    required = os.environ.get("FORESIGHT_REQUIRE_BROWSER") == "1"
    path = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.path.exists(p)), None)
    problem = None
    if path is None:
        problem = "no Chromium found (/usr/bin/chromium); install Debian's `chromium` package"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    if problem:
        if required:
            pytest.fail(f"FORESIGHT_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(f"browser test skipped: {problem} (set FORESIGHT_REQUIRE_BROWSER=1 to fail instead)")
    assert path is not None
    return path


def wait_js(page: Any, expr: str, what: str, problems: list[str], timeout: float = 30_000) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(expr, timeout=timeout)
    except PlaywrightTimeout:
        chart = page.evaluate("JSON.stringify(document.getElementById('chart').dataset)")
        status = page.locator("#status").inner_text()
        raise AssertionError(f"timed out waiting for {what}; chart {chart}; status {status!r}; "
                             f"problems {problems}") from None


def test_dashboard_in_chromium(broker, prefix, start_worker, tmp_path):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    scalers = tmp_path / "scalers.yaml"
    scalers.write_text(SCALERS)
    worker = start_worker(prefix, FORESIGHT_WINDOW_SECONDS="10", FORESIGHT_PERIOD_STEPS="12",
                          FORESIGHT_HORIZON_STEPS="6", FORESIGHT_SCALERS=str(scalers))
    series = ["checkout/requests", "search/requests", "cart/requests"]
    windows, spike = 200, 185
    produce(broker, prefix, series, windows, spike=("checkout/requests", spike), metric="web/cpu",
            shift=("cart/requests", 120, 2.0))
    port = worker.port
    for s in series:
        poll(port, series_path(s), lambda b: len(b["points"]) >= windows - 3, f"{s} in the API")
    poll(port, series_path("checkout/requests"), lambda b: len(b["anomalies"]) >= 1, "the spike flagged")
    # the level of cart/requests doubles from window 120: the model says it drifted
    drift = poll(port, series_path("cart/requests"), lambda b: len(b["drift"]["started"]) >= 1,
                 "the drift noticed")["drift"]
    assert T0 + 120 * WINDOW < drift["started"][0] <= T0 + 140 * WINDOW, drift
    send_raw(broker, f"{prefix}.decisions", [
        decision("shop/checkout", T0 + 170 * WINDOW, 2, 2, "WithinTolerance", peak=80.0, applied=False),
        decision("shop/checkout", T0 + 175 * WINDOW, 2, 3, "ForecastPeak", peak=110.0),
    ])
    poll(port, "/api/decisions", lambda b: len(b["items"]) == 2, "the first decisions")

    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(f"http://127.0.0.1:{port}/dashboard/")

            # the series list fills (all four series: three event series and the metric)
            wait_js(page, "document.querySelectorAll('#series-rows tr').length === 4", "the series list", problems)
            names = page.locator("#series-rows tr td.name").all_inner_texts()
            assert names == sorted(series + ["web/cpu"])
            assert "events/s" in page.locator('#series-rows tr[data-series="cart/requests"]').inner_text()

            # selecting a series draws its chart, with the forecast band
            page.locator('#series-rows tr[data-series="checkout/requests"]').click()
            wait_js(page, """() => { const c = document.getElementById('chart');
                           return c.dataset.series === 'checkout/requests' && +c.dataset.forecast === 6
                                  && +c.dataset.band > 80 && +c.dataset.anomalies >= 1
                                  && c.querySelector('canvas') !== null; }""", "the chart", problems)
            assert page.locator("#chart-title").inner_text() == "checkout/requests (events/s)"
            assert "step 10 s" in page.locator("#chart-meta").inner_text()  # the series' own step
            band_pixels = page.evaluate(
                """([r, g, b, a]) => { const cv = document.querySelector('#chart canvas');
                     const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
                     let n = 0;
                     for (let i = 0; i < d.length; i += 4)
                       if (Math.abs(d[i] - r) < 8 && Math.abs(d[i + 1] - g) < 8 && d[i + 2] < 8
                           && Math.abs(d[i + 3] - a) < 12) n++;
                     return n; }""", list(BAND_RGBA))
            assert band_pixels > 100, f"the forecast band was not painted ({band_pixels} band pixels)"
            assert "#series=checkout%2Frequests" in page.url

            # the targets panel and the decision log show what is there...
            page.wait_for_function("document.querySelectorAll('#decision-rows tr').length === 2")
            assert "2 → 3" in page.locator("#decision-rows tr").first.inner_text()
            page.evaluate("window.__sameDocument = true")

            # ...and a decision made while the page is open appears, newest first
            send_raw(broker, f"{prefix}.decisions", [
                decision("shop/checkout", T0 + 190 * WINDOW, 3, 7, "ReactiveFloor", peak=640.0,
                         vs_hpa=VS_HPA)])
            page.wait_for_function(
                "document.querySelector('#decision-rows tr') && "
                "document.querySelector('#decision-rows tr').innerText.includes('ReactiveFloor')",
                timeout=60_000)
            first = page.locator("#decision-rows tr").first.inner_text()
            assert "shop/checkout" in first and "3 → 7" in first and "640" in first
            assert page.evaluate("window.__sameDocument === true"), "the page must update without reloading"
            page.wait_for_function(
                "document.querySelector('[data-target=\"shop/checkout\"] .now')"
                " && document.querySelector('[data-target=\"shop/checkout\"] .now').innerText.includes('3 → 7')")

            # the card says why, in a sentence (not only on hover), with units, capacity, min and max
            card = page.locator('[data-target="shop/checkout"]')
            assert card.locator(".sentence").inner_text() == "ReactiveFloor 3->7"
            assert card.locator(".sentence").is_visible()
            # the shadow comparison, in one line
            assert card.locator(".vs").inner_text() == (
                "last 24.0 h: unserved 62 % below the equal-cost HPA's, "
                "at 4 % more replica-hours than the HPA at 100 %")
            facts = card.locator(".facts").inner_text()
            for fact in ("forecast peak 640 events/s", "observed 100 events/s",
                         "capacity 120 events/s per replica", "min 2 · max 60 replicas", "lead time 3 min"):
                assert fact in facts, facts
            assert card.locator(".now .badge").inner_text() == "applied"
            when = card.locator(".when").inner_text()
            assert when.startswith("decided at ") and "(event time)" in when and "behind now" in when, when
            assert "(wall clock)" in page.locator("#status").inner_text()
            assert page.locator("#decision-rows tr td.why").first.inner_text() == "ReactiveFloor 3->7"
            assert page.locator("#decision-rows tr td.why").first.is_visible()
            assert "event time" in page.locator("#log-panel thead").inner_text()

            # badges tell applied from limited from held
            send_raw(broker, f"{prefix}.decisions", [
                decision("shop/checkout", T0 + 195 * WINDOW, 7, 12, "RateLimited", peak=1900.0),
                decision("shop/checkout", T0 + 200 * WINDOW, 12, 12, "ScaleDownStabilized", peak=300.0,
                         applied=False)])
            page.wait_for_function("document.querySelectorAll('#decision-rows tr').length === 5", timeout=60_000)
            badges = page.locator("#decision-rows tr .badge").all_inner_texts()
            assert badges == ["held", "applied (limited)", "applied", "applied", "no change"], badges
            page.wait_for_function("document.querySelector('[data-target=\"shop/checkout\"] .now')"
                                   ".innerText.includes('ScaleDownStabilized')")
            assert card.locator(".now .badge").inner_text() == "held"
            assert card.locator(".sentence").inner_text() == "ScaleDownStabilized 12->12"
            assert card.locator("table.signals").is_hidden()  # one signal: the facts say it all

            # several signals: a row per signal with its figures, the deciding one marked, and
            # the scheduled minimum in force
            key, raw = decision("shop/checkout", T0 + 205 * WINDOW, 12, 20, "Scheduled", peak=900.0)
            body = orjson.loads(raw)
            body["signal"] = "queue"
            body["schedule"] = {"name": "black-friday", "min_replicas": 20}
            body["signals"] = [
                {"name": "checkout/requests", "series": "checkout/requests", "desired": 8,
                 "reason": "ForecastPeak", "observed": 700.0, "forecast_peak": 900.0,
                 "capacity_per_replica": 120.0, "lead_time_seconds": 180.0, "fallback": None},
                {"name": "queue", "series": "prometheus/e61613b0bbd6c203", "desired": 12,
                 "reason": "StaleForecast", "observed": 480.0, "forecast_peak": None,
                 "capacity_per_replica": 400.0, "lead_time_seconds": 60.0,
                 "fallback": "StaleForecast"}]
            send_raw(broker, f"{prefix}.decisions", [(key, orjson.dumps(body))])
            page.wait_for_function("document.querySelectorAll("
                                   "'[data-target=\"shop/checkout\"] table.signals tr').length === 3",
                                   timeout=60_000)
            rows = card.locator("table.signals tr").all_inner_texts()
            assert rows[1].split("\t") == ["checkout/requests", "700", "900", "120", "3 min", "8",
                                            "ForecastPeak"], rows
            assert rows[2].split("\t") == ["queue ◂ decides", "480", "–", "400", "60 s", "12",
                                            "StaleForecast"], rows
            assert "schedule black-friday: at least 20 replicas" in card.locator(".facts").inner_text()

            # the drift is marked on the chart of the series that drifted
            page.locator('#series-rows tr[data-series="cart/requests"]').click()
            wait_js(page, "document.getElementById('chart').dataset.series === 'cart/requests'"
                    " && Number(document.getElementById('chart').dataset.drifts) >= 1",
                    "the drift marker", problems)

            # filtering narrows the list
            page.fill("#filter", "cart")
            page.wait_for_function("document.querySelectorAll('#series-rows tr').length === 1")
            page.fill("#filter", "")
            page.wait_for_function("document.querySelectorAll('#series-rows tr').length === 4")
            page.locator('#series-rows tr[data-series="checkout/requests"]').scroll_into_view_if_needed()
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert problems == [], problems
    assert Path(ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_missing_browser_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.delenv("FORESIGHT_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium found"):
        chromium_or_skip()
    monkeypatch.setenv("FORESIGHT_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="FORESIGHT_REQUIRE_BROWSER=1 but no Chromium"):
        chromium_or_skip()
