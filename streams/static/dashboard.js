/* Foresight dashboard: polls the worker's JSON API, draws with uPlot (vendored).
 * Read-only. Times are epoch seconds in the API and shown in the browser's local time.
 * Two clocks: "event time" is the time in the data (what windows and decisions run on);
 * "wall clock" is this browser's now. Their difference is the lag, shown beside event times. */
(function () {
  "use strict";

  // Okabe-Ito palette (colour-blind safe)
  const C = {
    blue: "#0072B2", orange: "#E69F00", vermillion: "#D55E00", green: "#009E73",
    sky: "#56B4E9", purple: "#CC79A7", band: "rgba(230,159,0,0.22)", grid: "#e6e9ed",
  };
  const POLL_MS = 2000;
  const PAGE = 50;

  const $ = (id) => document.getElementById(id);
  const state = {
    q: "", sort: "series", offset: 0, total: 0,
    selected: decodeHash(), chart: null, chartFor: null, targetCharts: new Map(),
    seenDecisions: new Set(), firstDecisions: true, failures: 0, units: new Map(),
  };
  window.foresight = state; // for debugging from the console

  function decodeHash() {
    const m = /(?:^|&)series=([^&]*)/.exec(location.hash.slice(1));
    return m ? decodeURIComponent(m[1]) : null;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (v === 0 && digits === undefined) return "0";
    const a = Math.abs(v);
    if (digits !== undefined) return v.toFixed(digits);
    if (a >= 1000) return v.toLocaleString(undefined, { maximumFractionDigits: 0 });
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  function fmtTime(ts) {
    return ts === null || ts === undefined ? "–" : new Date(ts * 1000).toLocaleString();
  }
  // a duration in seconds, for people: "45 s", "12 min", "5.2 h", "334 days"
  function fmtDuration(sec) {
    const a = Math.abs(sec);
    if (a < 90) return `${Math.round(a)} s`;
    if (a < 90 * 60) return `${Math.round(a / 60)} min`;
    if (a < 48 * 3600) return `${(a / 3600).toFixed(1)} h`;
    return `${Math.round(a / 86400)} days`;
  }
  // the lag between an event time and now (wall clock)
  function fmtLag(ts) {
    if (ts === null || ts === undefined) return "";
    const lag = Date.now() / 1000 - ts;
    return lag >= 0 ? `${fmtDuration(lag)} behind now` : `${fmtDuration(lag)} ahead of now`;
  }
  function withUnit(v, unit) {
    return v === null || v === undefined ? "–" : `${fmt(v)}${unit ? " " + unit : ""}`;
  }
  // reasons that mean "a limit shaped the change" and "the count was held on purpose"
  const LIMITED = new Set(["RateLimited", "Bounded", "ScaleUpStabilized", "ScaleDownStabilized"]);
  const HELD = new Set(["ScaleDownStabilized", "ScaleUpStabilized", "StaleForecast", "NoForecast",
    "ColdForecast", "AnomalousSeries", "HorizonTooShort", "InvalidSpec", "ConflictingAutoscaler", "RateLimited",
    "Bounded"]);
  // what happened to a decision, as a badge: applied / applied (limited) / held / no change / dry run
  function outcome(d) {
    if (d.desired === d.current) {
      return HELD.has(d.reason) ? { cls: "held", text: "held" } : { cls: "same", text: "no change" };
    }
    if (d.applied) {
      return LIMITED.has(d.reason) ? { cls: "applied limited", text: "applied (limited)" }
        : { cls: "applied", text: "applied" };
    }
    if (d.mode === "ForecastOnly") return { cls: "dryrun", text: "dry run: not applied" };
    return { cls: "held", text: "not applied" };
  }
  function badge(d) {
    const o = outcome(d);
    return el("span", { class: "badge " + o.cls, text: o.text });
  }
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) e.append(c);
    return e;
  }
  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body && body.error ? body.error : ("HTTP " + r.status));
    return body;
  }
  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("bad", !!bad);
  }

  // ---- series list -------------------------------------------------------
  async function loadSeries() {
    const p = new URLSearchParams({ q: state.q, sort: state.sort, offset: state.offset, limit: PAGE });
    const body = await getJSON("/api/series?" + p);
    state.total = body.total;
    const rows = $("series-rows");
    const frag = document.createDocumentFragment();
    for (const s of body.items) {
      const tr = el("tr", { "data-series": s.series, tabindex: "0" }, [
        el("td", { class: "name", title: s.series, text: s.series }),
        el("td", { class: "num" }, [fmt(s.value), el("span", { class: "unit", text: s.unit || "" })]),
        el("td", { class: "num" + (s.anomalous ? " score-hi" : ""), text: fmt(s.score, 2) }),
        el("td", { class: "num", text: fmt(s.error, 2) }),
      ]);
      if (s.series === state.selected) tr.classList.add("selected");
      frag.append(tr);
    }
    rows.replaceChildren(frag);
    const last = Math.min(state.offset + body.items.length, body.total);
    $("page-info").textContent = body.total ? `${state.offset + 1}–${last} of ${body.total.toLocaleString()}` : "no series yet";
    $("series-total").textContent = `(${body.total.toLocaleString()})`;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= body.total;
    if (!state.selected && body.items.length) select(body.items[0].series, false);
    return body;
  }

  function select(series, push) {
    state.selected = series;
    if (push !== false) history.replaceState(null, "", "#series=" + encodeURIComponent(series));
    for (const tr of $("series-rows").children) tr.classList.toggle("selected", tr.dataset.series === series);
    loadDetail().catch(onError);
  }

  // ---- chart of one series ------------------------------------------------
  function nowLinePlugin(getTs) {
    return {
      hooks: {
        draw: (u) => {
          const ts = getTs();
          if (ts === null) return;
          const x = Math.round(u.valToPos(ts, "x", true));
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#8a949e";
          ctx.setLineDash([3, 3]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.restore();
        },
      },
    };
  }

  // a vertical line, labelled "drift", where each drift of the model's errors began
  function driftPlugin(getStarts) {
    return {
      hooks: {
        draw: (u) => {
          const ctx = u.ctx;
          for (const ts of getStarts()) {
            const x = Math.round(u.valToPos(ts, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.save();
            ctx.strokeStyle = C.vermillion;
            ctx.lineWidth = 2;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillStyle = C.vermillion;
            ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
            ctx.fillText("drift", x + 4, u.bbox.top + 14 * devicePixelRatio);
            ctx.restore();
          }
        },
      },
    };
  }

  function chartData(d) {
    const obs = new Map(), yhat = new Map(), lo = new Map(), hi = new Map(), an = new Map();
    for (const p of d.points) obs.set(p.ts, p.value);
    for (const f of d.fitted) { yhat.set(f.ts, f.yhat); lo.set(f.ts, f.lower); hi.set(f.ts, f.upper); }
    for (const f of (d.forecast && d.forecast.points) || []) { yhat.set(f.ts, f.yhat); lo.set(f.ts, f.lower); hi.set(f.ts, f.upper); }
    for (const a of d.anomalies) an.set(a.ts, a.value);
    const xs = Array.from(new Set([...obs.keys(), ...yhat.keys()])).sort((a, b) => a - b);
    const g = (m) => xs.map((x) => (m.has(x) ? m.get(x) : null));
    return [xs, g(obs), g(yhat), g(lo), g(hi), g(an)];
  }

  function chartWidth() {
    return Math.max(300, $("chart").clientWidth || 600);
  }

  function drawChart(d) {
    const data = chartData(d);
    const unit = d.unit || "value";
    const box = $("chart");
    if (!state.chart || state.chartFor !== d.series) {
      if (state.chart) state.chart.destroy();
      box.replaceChildren();
      const opts = {
        width: chartWidth(), height: 340,
        scales: { x: { time: true } },
        cursor: { drag: { x: true, y: false } },
        legend: { live: true },
        series: [
          { label: "event time (local)" },
          { label: "observed", stroke: C.blue, width: 2, value: (u, v) => fmt(v) + " " + (d.unit || "") },
          { label: "forecast", stroke: C.orange, width: 2, dash: [6, 4], value: (u, v) => fmt(v) },
          { label: "lower", stroke: "rgba(230,159,0,0.6)", width: 1, value: (u, v) => fmt(v) },
          { label: "upper", stroke: "rgba(230,159,0,0.6)", width: 1, value: (u, v) => fmt(v) },
          { label: "anomaly", stroke: C.vermillion, fill: C.vermillion, width: 0, paths: () => null,
            points: { show: true, size: 11, fill: C.vermillion, stroke: "#fff", width: 1 },
            value: (u, v) => (v === null ? "–" : fmt(v)) },
        ],
        bands: [{ series: [4, 3], fill: C.band }],
        axes: [
          { grid: { stroke: C.grid } },
          { label: unit, size: 64, grid: { stroke: C.grid }, values: (u, vals) => vals.map((v) => fmt(v)) },
        ],
        plugins: [nowLinePlugin(() => (state.detail && state.detail.ts !== undefined ? state.detail.ts : null)),
                  driftPlugin(() => (state.detail && state.detail.drift ? state.detail.drift.started : []))],
      };
      state.chart = new uPlot(opts, data, box);
      state.chartFor = d.series;
    } else {
      state.chart.setData(data);
    }
    box.dataset.series = d.series;
    box.dataset.observed = String(d.points.length);
    box.dataset.forecast = String(((d.forecast && d.forecast.points) || []).length);
    box.dataset.band = String(data[3].filter((v) => v !== null).length);
    box.dataset.anomalies = String(d.anomalies.length);
    box.dataset.drifts = String(((d.drift && d.drift.started) || []).length);
  }

  async function loadDetail() {
    const series = state.selected;
    if (!series) return;
    let d;
    try {
      d = await getJSON("/api/series/" + encodeURIComponent(series));
    } catch (e) {
      if (series === state.selected) {
        $("chart-title").textContent = series;
        $("chart-meta").textContent = "not available: " + e.message;
      }
      return;
    }
    if (series !== state.selected) return;
    state.detail = d;
    $("chart-title").textContent = d.series + (d.unit ? ` (${d.unit})` : "");
    const fc = d.forecast || {};
    $("chart-meta").textContent = [
      `latest ${fmt(d.value)} ${d.unit || ""} at ${fmtTime(d.ts)} (event time, ${fmtLag(d.ts)})`,
      `anomaly score ${fmt(d.score, 2)}${d.anomalous ? " (anomalous)" : ""}`,
      `forecast error ${fmt(d.error, 2)}`,
      `model ${fc.model || "–"}${fc.warm === false ? " (warming up)" : ""}`,
      // the series' own step: its sampling interval rounded up to whole windows (streams/steps.py)
      `step ${d.step ? fmtDuration(d.step) : "–"}`,
      `learnt ${d.points_learnt !== undefined ? d.points_learnt.toLocaleString() : "–"} windows` +
        (d.history_points ? ` (${d.history_points.toLocaleString()} from history)` : ""),
      `interval coverage ${fc.coverage !== undefined ? Math.round(fc.coverage * 100) + "%" : "–"}`,
    ].concat(d.drift && d.drift.drifting
      ? [`drifting since ${fmtTime(d.drift.started[d.drift.started.length - 1])}: scaled reactively until the model has adapted`]
      : []).join(" · ");
    drawChart(d);
  }

  // ---- targets and decisions ----------------------------------------------
  function targetChart(box, t) {
    const xs = t.history.map((h) => h.ts);
    const data = [xs, t.history.map((h) => h.current), t.history.map((h) => h.desired)];
    let c = state.targetCharts.get(t.target);
    if (c && c.root.isConnected) { c.setData(data); return; }
    const stepped = uPlot.paths.stepped({ align: 1 });
    c = new uPlot({
      width: Math.max(300, box.clientWidth - 4), height: 150,
      scales: { x: { time: true }, y: { range: (u, mn, mx) => [0, Math.max(1, mx) * 1.15] } },
      legend: { live: false },
      series: [
        {},
        { label: "current replicas", stroke: C.blue, width: 2, paths: stepped },
        { label: "desired replicas", stroke: C.orange, width: 2, dash: [5, 3], paths: stepped },
      ],
      axes: [{ grid: { stroke: C.grid } }, { label: "replicas", size: 44, grid: { stroke: C.grid } }],
    }, data, box);
    state.targetCharts.set(t.target, c);
  }

  // the shadow comparison in one line (the same sentence as scaler.decision.Comparison.summary)
  function vsLine(v) {
    if (!v || !v.window_seconds) return "vs HPA: not measured yet";
    const span = v.window_seconds >= 86400 ? `last ${fmtDuration(86400)}` : `last ${fmtDuration(v.window_seconds)}`;
    const pct = (x) => `${Math.round(Math.abs(x) * 100)} %`;
    let head;
    if (v.hpa_equal_cost_unserved > 0) {
      const r = v.unserved / v.hpa_equal_cost_unserved - 1;
      head = `unserved ${pct(r)} ${r < 0 ? "below" : "above"} the equal-cost HPA's`;
    } else {
      head = v.unserved > 0 ? "some load unserved where the equal-cost HPA served all" : "no load unserved";
    }
    let tail = "no replica-hours yet";
    if (v.hpa_replica_seconds > 0) {
      const c = v.replica_seconds / v.hpa_replica_seconds - 1;
      tail = `at ${pct(c)} ${c >= 0 ? "more" : "fewer"} replica-hours than the HPA at 100 %`;
    }
    return `${span}: ${head}, ${tail}`;
  }

  function unitOf(target) {
    return state.units.get(target) || "";
  }

  async function loadTargets() {
    const body = await getJSON("/api/targets");
    for (const t of body.items) state.units.set(t.target, t.unit || (t.spec ? `(units of ${t.spec.series})` : ""));
    const wrap = $("targets");
    $("no-targets").hidden = body.items.length > 0;
    const keep = new Set();
    for (const t of body.items) {
      keep.add(t.target);
      let card = wrap.querySelector(`[data-target="${CSS.escape(t.target)}"]`);
      if (!card) {
        card = el("div", { class: "target", "data-target": t.target }, [
          el("h3", { text: t.target }), el("div", { class: "now" }), el("p", { class: "sentence" }),
          el("p", { class: "vs" }),
          el("div", { class: "facts" }), el("table", { class: "signals" }),
          el("div", { class: "when muted" }), el("div", { class: "tchart" }),
        ]);
        wrap.append(card);
      }
      const dir = t.desired > t.current ? "up" : t.desired < t.current ? "down" : "";
      const unit = t.unit || (t.spec ? `(units of ${t.spec.series})` : "");
      const spec = t.spec;
      card.querySelector(".now").replaceChildren(
        el("span", { class: dir, text: `${t.current} → ${t.desired} replicas` }), " ", badge(t), " ",
        el("span", { class: "reason", text: t.reason }),
      );
      card.querySelector(".sentence").textContent = t.message || "";
      card.querySelector(".vs").textContent = vsLine(t.vs_hpa)
        + (t.mode === "ForecastOnly" && t.simulated_replicas != null
          ? ` · dry run: would have ${t.simulated_replicas} replicas` : "");
      card.querySelector(".facts").replaceChildren(
        el("span", { class: "fact", text: `forecast peak ${withUnit(t.forecast_peak, unit)}` }),
        el("span", { class: "fact", text: `observed ${withUnit(t.observed, unit)}` }),
        el("span", { class: "fact cap", text: spec ? `capacity ${withUnit(spec.capacity_per_replica, unit)} per replica` : "capacity –" }),
        el("span", { class: "fact bounds", text: spec ? `min ${spec.min_replicas} · max ${spec.max_replicas} replicas` : "min – · max –" }),
        el("span", { class: "fact", text: spec ? `lead time ${fmtDuration(spec.lead_time_seconds)}` : "" }),
        el("span", { class: "fact", text: `mode ${t.mode || "–"}` }),
        ...(t.schedule ? [el("span", { class: "fact schedule",
          text: `schedule ${t.schedule.name}: at least ${t.schedule.min_replicas} replicas` })] : []),
      );
      signalRows(card.querySelector(".signals"), t);
      card.querySelector(".when").textContent = `decided at ${fmtTime(t.ts)} (event time) · ${fmtLag(t.ts)}`;
      targetChart(card.querySelector(".tchart"), t);
    }
    for (const card of Array.from(wrap.children)) {
      if (!keep.has(card.dataset.target)) { card.remove(); state.targetCharts.delete(card.dataset.target); }
    }
  }

  // each signal's figures when a target has several: the deciding one is marked
  function signalRows(table, t) {
    const sigs = t.signals || [];
    table.hidden = sigs.length < 2;
    if (table.hidden) { table.replaceChildren(); return; }
    const kafka = sigs.some((f) => f.lag != null);  // a Kafka topic signal: its lag too
    const head = el("tr", {}, ["signal", "observed", "forecast peak", "capacity", "lead time",
      ...(kafka ? ["lag"] : []), "needs", "reason"].map((h) => el("th", { text: h })));
    const rows = sigs.map((f) => el("tr", { class: f.name === t.signal ? "decider" : "",
      "data-signal": f.name }, [
      el("td", { text: f.name === t.signal ? `${f.name} ◂ decides` : f.name, title: f.series }),
      el("td", { class: "num", text: fmt(f.observed) }),
      el("td", { class: "num", text: fmt(f.forecast_peak) }),
      el("td", { class: "num", text: fmt(f.capacity_per_replica) }),
      el("td", { class: "num", text: f.lead_time_seconds == null ? "–" : fmtDuration(f.lead_time_seconds) }),
      ...(kafka ? [el("td", { class: "num", text: f.partitions == null ? fmt(f.lag)
        : `${fmt(f.lag)} (${f.partitions} partitions)` })] : []),
      el("td", { class: "num", text: String(f.desired) }),
      el("td", { class: "reason", text: f.reason }),
    ]));
    table.replaceChildren(head, ...rows);
  }

  async function loadDecisions() {
    const body = await getJSON("/api/decisions?limit=50");
    const frag = document.createDocumentFragment();
    for (const d of body.items) {
      const id = `${d.target}@${d.ts}@${d.desired}@${d.reason}`;
      const dir = d.desired > d.current ? "up" : d.desired < d.current ? "down" : "";
      const tr = el("tr", { "data-target": d.target }, [
        el("td", { text: fmtTime(d.ts) }),
        el("td", { text: d.target }),
        el("td", { class: "num " + dir, text: `${d.current} → ${d.desired}` }),
        el("td", {}, [badge(d), " ", el("span", { class: "reason", text: d.reason })]),
        el("td", { class: "why", text: d.message || "" }),
        el("td", { class: "num", text: withUnit(d.forecast_peak, unitOf(d.target)) }),
        el("td", { text: d.mode || "" }),
      ]);
      if (!state.firstDecisions && !state.seenDecisions.has(id)) tr.classList.add("fresh");
      state.seenDecisions.add(id);
      frag.append(tr);
    }
    state.firstDecisions = false;
    $("decision-rows").replaceChildren(frag);
  }

  // ---- polling -------------------------------------------------------------
  function onError(e) {
    state.failures += 1;
    setStatus("update failed: " + e.message + " (retrying)", true);
  }

  async function tick() {
    try {
      const results = await Promise.allSettled([loadSeries(), loadDetail(), loadTargets(), loadDecisions()]);
      const failed = results.filter((r) => r.status === "rejected");
      const partial = results[0].status === "fulfilled" && results[0].value.partial;
      if (failed.length) onError(failed[0].reason);
      else setStatus(`page updated ${new Date().toLocaleTimeString()} (wall clock)${partial ? " · some workers unavailable" : ""}`, partial);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }

  let filterTimer = null;
  $("filter").addEventListener("input", (e) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { state.q = e.target.value; state.offset = 0; loadSeries().catch(onError); }, 200);
  });
  $("sort").addEventListener("change", (e) => { state.sort = e.target.value; state.offset = 0; loadSeries().catch(onError); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadSeries().catch(onError); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadSeries().catch(onError); });
  $("series-rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) select(tr.dataset.series);
  });
  $("series-rows").addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); select(tr.dataset.series); }
  });
  window.addEventListener("resize", () => {
    if (state.chart) state.chart.setSize({ width: chartWidth(), height: 340 });
  });
  tick();
})();
