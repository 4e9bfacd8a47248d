// healthscore report. Every value from the data is put on screen as text (textContent or
// SVG text nodes), never parsed as markup.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("hs-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = { "Critical": "#c53030", "At-risk": "#dd6b20", "Healthy": "#38a169", "Thriving": "#2b6cb0",
    "Requires attention": "#c53030", "Take notice": "#dd6b20", "Doing well": "#38a169",
    "insufficient_data": "#a0aec0" };
  const SERIES = ["#2b6cb0", "#dd6b20", "#718096", "#38a169"];
  const byId = (id) => document.getElementById(id);
  const accounts = new Map(D.accounts.map((a) => [a.account_id, a]));

  // ----------------------------------------------------------------- small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text != null) node.textContent = String(text);
    return node;
  }
  const fmt = {
    int: (v) => v == null ? "–" : Math.round(v).toLocaleString("en-US"),
    num: (v, d = 1) => v == null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }),
    pct: (v, d = 0) => v == null ? "–" : (100 * v).toFixed(d) + "%",
    money: (v) => v == null ? "–" : "$" + Math.round(v).toLocaleString("en-US"),
    signed: (v) => v == null ? "–" : (v > 0 ? "+" : v < 0 ? "−" : "±") + Math.abs(v).toFixed(1),
  };
  const chip = (band) => el("span", { class: "chip", style: "background:" + (COLORS[band] || "#718096") },
    band === "insufficient_data" ? "Insufficient data" : band);
  const nameOf = (a) => a.account_name || a.account_id;
  function table(headers, rows, numeric) {
    const t = el("table");
    t.append(el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", { class: numeric && numeric[i] ? "num" : "" }, h)))));
    const body = el("tbody");
    for (const r of rows) body.append(el("tr", {}, ...r.map((c, i) => el("td", { class: numeric && numeric[i] ? "num" : "" }, c))));
    t.append(body);
    return t;
  }
  function accountLink(id) {
    const a = accounts.get(id);
    return el("button", { class: "link", onclick: () => openCard(id) }, a ? nameOf(a) : id);
  }

  // ----------------------------------------------------------------- charts (SVG)
  // Horizontal bars: [{label, value, color, text}]
  function hbars(items, width = 460, scaleMax = null) {  // scaleMax: one scale for several charts
    const rowH = 24, left = 150, right = 110, max = scaleMax || Math.max(1e-9, ...items.map((i) => Math.abs(i.value)));
    const s = svg("svg", { viewBox: `0 0 ${width} ${items.length * rowH + 4}`, width: "100%", role: "img" });
    items.forEach((it, k) => {
      const y = k * rowH + 2, w = (width - left - right) * Math.abs(it.value) / max;
      s.append(svg("text", { x: left - 6, y: y + 15, "text-anchor": "end" }, it.label));
      s.append(svg("rect", { x: left, y: y + 3, width: Math.max(w, 0.5), height: rowH - 8, fill: it.color || SERIES[0], rx: 2 }));
      s.append(svg("text", { x: left + w + 6, y: y + 15 }, it.text));
    });
    return s;
  }
  // Lines: {xs: [labels or numbers], series: [{name, ys, color, dash}], yMin, yMax, bands, xFormat}
  function lines(spec, width = 480, height = 200) {
    const m = { l: 40, r: 10, t: 10, b: 26 }, W = width - m.l - m.r, H = height - m.t - m.b;
    const all = spec.series.flatMap((s) => s.ys).filter((v) => v != null);
    let lo = spec.yMin != null ? spec.yMin : Math.min(...all), hi = spec.yMax != null ? spec.yMax : Math.max(...all);
    if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
    if (hi === lo) { hi = lo + 1; }
    const n = spec.xs.length, x = (i) => m.l + (n <= 1 ? W / 2 : W * i / (n - 1));
    const xn = spec.xNumeric, xLo = xn ? Math.min(...spec.xs) : 0, xHi = xn ? Math.max(...spec.xs) : 1;
    const xAt = (i) => xn ? m.l + W * (spec.xs[i] - xLo) / ((xHi - xLo) || 1) : x(i);
    const y = (v) => m.t + H * (1 - (v - lo) / (hi - lo));
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
    for (const b of spec.bands || []) {  // background bands (score thresholds)
      s.append(svg("rect", { x: m.l, y: y(b.to), width: W, height: Math.max(0, y(b.from) - y(b.to)), fill: b.color, opacity: 0.13 }));
    }
    for (const t of [lo, (lo + hi) / 2, hi]) {
      s.append(svg("line", { x1: m.l, x2: m.l + W, y1: y(t), y2: y(t), stroke: "#e2e8f0" }));
      const whole = all.every((v) => Number.isInteger(v));
      s.append(svg("text", { x: m.l - 4, y: y(t) + 4, "text-anchor": "end" }, spec.yFormat ? spec.yFormat(t) : fmt.num(t, (whole && hi - lo >= 2) || hi - lo >= 5 ? 0 : 2)));
    }
    const ticks = n <= 1 ? [0] : [0, Math.floor((n - 1) / 2), n - 1];
    for (const i of ticks) {
      const anchor = n <= 1 ? "middle" : i === 0 ? "start" : i === n - 1 ? "end" : "middle";
      s.append(svg("text", { x: xAt(i), y: height - 6, "text-anchor": anchor }, spec.xFormat ? spec.xFormat(spec.xs[i]) : spec.xs[i]));
    }
    for (const ser of spec.series) {
      let d = "", pen = false;
      ser.ys.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        d += (pen ? "L" : "M") + xAt(i).toFixed(1) + "," + y(v).toFixed(1); pen = true;
      });
      s.append(svg("path", { d, fill: "none", stroke: ser.color, "stroke-width": ser.width || 2, "stroke-dasharray": ser.dash || "" }));
      if (ser.dots) ser.ys.forEach((v, i) => { if (v != null) s.append(svg("circle", { cx: xAt(i), cy: y(v), r: 3, fill: ser.dotColors ? ser.dotColors[i] : ser.color })); });
    }
    if (spec.legend !== false && spec.series.length > 1) {
      spec.series.forEach((ser, k) => {
        s.append(svg("rect", { x: m.l + 8, y: m.t + 4 + 14 * k, width: 10, height: 3, fill: ser.color }));
        s.append(svg("text", { x: m.l + 22, y: m.t + 9 + 14 * k }, ser.name));
      });
    }
    return s;
  }
  // Waterfall: start value, steps [{label, value}], end value; labels on the left.
  function waterfall(start, steps, end, width = 480) {
    const rowH = 22, left = 150, right = 60, rows = [{ label: "Start (its contract)", total: start }, ...steps, { label: "Health score", total: end }];
    let run = start; const spans = [];
    for (const r of rows) {
      if (r.total != null) spans.push([0, r.total]);
      else { spans.push([run, run + r.value]); run += r.value; }
    }
    const lo = Math.min(0, ...spans.flat()), hi = Math.max(100, ...spans.flat());
    const W = width - left - right, X = (v) => left + W * (v - lo) / (hi - lo);
    const s = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowH + 6}`, width: "100%", role: "img" });
    rows.forEach((r, k) => {
      const [a, b] = spans[k], yy = k * rowH + 3;
      const color = r.total != null ? "#4a5568" : (r.value >= 0 ? "#38a169" : "#c53030");
      s.append(svg("text", { x: left - 6, y: yy + 14, "text-anchor": "end" }, r.label));
      s.append(svg("rect", { x: X(Math.min(a, b)), y: yy + 3, width: Math.max(1, Math.abs(X(b) - X(a))), height: rowH - 8, fill: color, rx: 2 }));
      s.append(svg("text", { x: X(Math.max(a, b)) + 4, y: yy + 14 }, r.total != null ? fmt.num(r.total) : fmt.signed(r.value)));
    });
    return s;
  }

  // ----------------------------------------------------------------- portfolio
  const meta = D.meta;
  byId("subtitle").textContent = `Model v${meta.model_version} · churn within ${meta.horizon_days} days · ` +
    `${meta.runs} scoring run(s) in the history · bands: ${meta.scheme} · generated ${meta.generated}` +
    ` by healthscore ${meta.versions.healthscore} (LightGBM ${meta.versions.lightgbm || "?"}, DuckDB ${meta.versions.duckdb || "?"})`;
  const k = D.kpis;
  byId("kpis").append(
    ...[["Accounts scored", fmt.int(k.scored) + (k.accounts !== k.scored ? ` of ${fmt.int(k.accounts)}` : "")],
      ...(() => {  // The headline: ARR the book can expect to lose in a year, with its interval.
        const fc = D.forecast, year = fc && fc.periods ? fc.periods.find((p) => p.period === "Next 12 months") : null;
        return year ? [["Expected ARR lost in the next 12 months (" + fmt.pct(fc.level) + " interval " + fmt.money(year.low) + " – " + fmt.money(year.high) + ")",
          fmt.money(year.expected_arr_lost) + " of " + fmt.money(k.arr)]] : [];
      })(),
      ["ARR in " + meta.at_risk_bands.join(" + "), fmt.money(k.at_risk_arr) + " of " + fmt.money(k.arr)],
      ["Newly " + meta.bands[0], fmt.int(k.newly_worst)],
      ["Median health score", fmt.num(k.median_score)]].map(([label, value]) => el("div", { class: "kpi" }, el("b", {}, value), el("span", {}, label))));

  byId("bands").append(table(["Band", "Accounts", "ARR", "Share of ARR"],
    D.bands.map((b) => [chip(b.band), fmt.int(b.accounts), fmt.money(b.arr), fmt.pct(k.arr ? b.arr / k.arr : null)]), [0, 1, 1, 1]));
  byId("bands").append(hbars(D.bands.map((b) => ({ label: b.band === "insufficient_data" ? "Insufficient data" : b.band,
    value: b.arr, color: COLORS[b.band], text: fmt.money(b.arr) }))));
  byId("distribution").append(hbarsVertical(D.distribution));
  function hbarsVertical(counts, width = 480, height = 200) {
    const m = { l: 36, r: 8, t: 8, b: 24 }, W = width - m.l - m.r, H = height - m.t - m.b, max = Math.max(1, ...counts);
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
    counts.forEach((c, i) => {
      const lo = i * 100 / counts.length, h = H * c / max, bw = W / counts.length;
      const band = meta.scheme === "fixed" ? (lo < 40 ? "Critical" : lo < 60 ? "At-risk" : lo < 80 ? "Healthy" : "Thriving") : null;
      s.append(svg("rect", { x: m.l + i * bw + 1, y: m.t + H - h, width: bw - 2, height: h, fill: band ? COLORS[band] : SERIES[0] }));
    });
    for (const t of [0, 20, 40, 60, 80, 100]) s.append(svg("text", { x: m.l + W * t / 100, y: height - 6, "text-anchor": "middle" }, t));
    s.append(svg("text", { x: m.l - 4, y: m.t + 8, "text-anchor": "end" }, fmt.int(max)));
    s.append(svg("text", { x: m.l - 4, y: m.t + H, "text-anchor": "end" }, 0));
    return s;
  }

  // Movers
  function moverTable(ids) {
    if (!ids.length) return el("p", { class: "muted" }, meta.runs > 1 ? "None." : "Needs two scoring runs.");
    return table(["Account", "Score", "Change", "Band", "Top risk"], ids.map((id) => {
      const a = accounts.get(id);
      return [accountLink(id), fmt.num(a.health_score), fmt.signed(a.score_change), chip(a.band), (a.top_risks || "").split(" | ")[0]];
    }), [0, 1, 1, 0, 0]);
  }
  byId("falls").append(moverTable(D.movers.falls));
  byId("rises").append(moverTable(D.movers.rises));
  byId("newly").append(moverTable(D.movers.newly_worst));

  // Weights and backtest
  const bt = D.backtest;
  if (bt.available) {
    const w = bt.weights;
    const cats = w.map((r) => r.category);
    const wrap = byId("weights-chart");
    const width = 720, rowH = 16, left = 170, group = 3 * rowH + 10;
    const s = svg("svg", { viewBox: `0 0 ${width} ${cats.length * group + 30}`, width: "100%", role: "img", style: "max-width:820px" });
    const max = Math.max(...w.flatMap((r) => [r.hand_weight, r.lightgbm_shap_share, r.logistic_weight_share]));
    const parts = [["lightgbm_shap_share", "Learned (LightGBM SHAP)", SERIES[0]], ["logistic_weight_share", "Logistic baseline", SERIES[2]], ["hand_weight", "Hand-set scorecard", SERIES[1]]];
    w.forEach((r, i) => {
      const y0 = i * group + 24;
      s.append(svg("text", { x: left - 8, y: y0 + rowH + 6, "text-anchor": "end" }, r.category + (r.has_data === false ? " (no data)" : "")));
      parts.forEach(([key, , color], j) => {
        const wd = (width - left - 70) * (r[key] || 0) / max;
        s.append(svg("rect", { x: left, y: y0 + j * rowH, width: Math.max(wd, 0.5), height: rowH - 3, fill: color }));
        s.append(svg("text", { x: left + wd + 4, y: y0 + j * rowH + 11 }, fmt.pct(r[key])));
      });
    });
    parts.forEach(([, label, color], j) => {
      s.append(svg("rect", { x: left + j * 190, y: 4, width: 10, height: 10, fill: color }));
      s.append(svg("text", { x: left + j * 190 + 14, y: 13 }, label));
    });
    wrap.append(s);

    const body = byId("backtest-body");
    if (bt.backtested === false) {
      const note = bt.note ? bt.note.charAt(0).toUpperCase() + bt.note.slice(1) : "No out-of-time backtest: too little labelled history";
      body.append(el("p", { class: "muted" }, `${note}.`));
    } else {
    body.append(el("p", { class: "muted" }, `Walk-forward, out of time: each fold trains only on outcomes known at its start and ` +
      `is scored on the weeks after it. Churn within ${bt.horizon_days} days. Working ${bt.capacity} accounts a week.`));
    body.append(table(["Model", "ROC-AUC", "PR-AUC", "Top-decile lift", `Precision @ ${bt.capacity}/week`, `Recall @ ${bt.capacity}/week`, "Calibration error (ECE)"],
      bt.models.map((r) => [r.model, fmt.num(r.roc_auc, 3), fmt.num(r.pr_auc, 3), fmt.num(r.top_decile_lift, 2) + "×",
        fmt.pct(r.precision_at_capacity, 1), fmt.pct(r.recall_at_capacity, 1), fmt.num(r.ece, 3)]), [0, 1, 1, 1, 1, 1, 1]));
    const row = el("div", { class: "row" });
    const names = Object.keys(bt.reliability);
    const rel = el("div", { class: "panel" }, el("h3", {}, "Reliability: predicted against observed churn"));
    const relMax = Math.max(0.05, ...names.flatMap((n) => bt.reliability[n].predicted.concat(bt.reliability[n].observed)));
    rel.append(scatterLines(names.map((n, i) => ({ name: n, xs: bt.reliability[n].predicted, ys: bt.reliability[n].observed, color: SERIES[i] })), relMax));
    const lift = el("div", { class: "panel" }, el("h3", {}, "Churners found when working the riskiest accounts first"));
    const ln = Object.keys(bt.lift);
    lift.append(lines({ xs: bt.lift[ln[0]].worked, xNumeric: true, xFormat: (v) => fmt.pct(v), yMin: 0, yMax: 1, yFormat: (v) => fmt.pct(v),
      series: [...ln.map((n, i) => ({ name: n, ys: bt.lift[n].found, color: SERIES[i] })), { name: "Random", ys: bt.lift[ln[0]].worked, color: "#cbd5e0", dash: "4 3", width: 1 }] }));
    row.append(rel, lift);
    body.append(row);
    // Do the bands rank real churn? Churn per account-year by band: pooled, per term, per segment.
    const bandBody = el("div", { class: "panel" }, el("h3", {}, "Do the bands rank real churn? Churn per account-year by band (backtest)"));
    if (bt.bands && bt.bands.length) {
      const order = meta.bands.filter((b) => b !== "insufficient_data");
      bandBody.append(el("p", { class: "muted" }, "Out of time: each observation scored by the model of its fold, judged by the outcome of its " +
        "contract term, each renewal decision counted once. Churn per account-year = churned decisions ÷ account-years of the terms " +
        "decided (a monthly term is a twelfth of a year). A worse band should churn more per year for every kind of account. " +
        "Cells: churn per account-year · the band's share of the group's observations."));
      for (const [view, title] of [["pooled", "All accounts"], ["term", "By contract term"], ["segment", "By segment"]]) {
        const rows = bt.bands.filter((b) => b.view === view);
        if (!rows.length) continue;
        const groups = [...new Set(rows.map((b) => b.group))];
        bandBody.append(el("h4", {}, title));
        bandBody.append(table([view === "pooled" ? "" : (view === "term" ? "Term" : "Segment"), ...order.map((b) => chip(b)), "Account-years"],
          groups.map((g) => {
            const of = (b) => rows.find((r) => r.group === g && r.band === b);
            return [g === "all" ? "All" : g, ...order.map((b) => { const r = of(b);
              return r && r.observations ? `${fmt.pct(r.churn_per_account_year, 1)} · ${fmt.pct(r.share)}` : "–"; }),
              fmt.num(rows.filter((r) => r.group === g).reduce((a, r) => a + r.account_years, 0), 0)];
          }), [0, ...order.map(() => 1), 1]));
      }
      // The same, drawn: a worse band should stand longer in every group.
      const charts = el("div", { class: "row" });
      const top = Math.max(1e-9, ...bt.bands.filter((b) => b.view !== "segment" && b.observations).map((b) => b.churn_per_account_year || 0));
      for (const g of [...new Set(bt.bands.filter((b) => b.view !== "segment").map((b) => b.group))]) {
        const rows = bt.bands.filter((b) => b.view !== "segment" && b.group === g && b.observations);
        charts.append(el("div", { class: "panel" }, el("h4", {}, g === "all" ? "All accounts" : `${g} terms`),
          hbars(rows.map((r) => ({ label: r.band, value: r.churn_per_account_year, color: COLORS[r.band],
            text: fmt.pct(r.churn_per_account_year, 1) + " a year" })), 360, top)));
      }
      bandBody.append(charts);
      const problems = bt.band_problems || [];
      bandBody.append(el("p", { class: problems.length ? "warn" : "muted" }, problems.length ?
        "Where the bands do not rank churn: " + problems.join("; ") + "." :
        "The bands rank churn: it falls from band to band pooled and within every term length (bands with 100+ account-years), and at least three bands hold 5% of each term's accounts."));
    } else bandBody.append(el("p", { class: "muted" }, "No per-band table: this model was trained by an older version (retrain to measure it)."));
    body.append(bandBody);
    }
  }
  // Early warning: every renewal decision of the backtest period, ranked L days before it.
  const ew = bt.available && bt.early_warning ? bt.early_warning : [];
  const ewBody = byId("early-warning-body");
  if (ew.length) {
    const leads = [...new Set(ew.map((r) => r.lead_days))].sort((a, b) => a - b);
    const models = [...new Set(ew.map((r) => r.label))];
    const at = (m, l, k) => { const r = ew.find((x) => x.label === m && x.lead_days === l); return r ? r[k] : null; };
    ewBody.append(el("p", { class: "muted" }, "Every renewal decision in the backtest period whose outcome is known, ranked by each model " +
      "as it stood that many days before the decision (trained only on outcomes known then). ROC-AUC 0.5 is a coin; " +
      "the scorecard never sees the contract calendar, and the LightGBM model without any contract metric is the like-for-like comparison."));
    const row = el("div", { class: "row" });
    const chart = el("div", { class: "panel" }, el("h3", {}, "ROC-AUC by days before the renewal"));
    chart.append(lines({ xs: leads.map((l) => `${l} d`), yMin: 0.4, yMax: 1, yFormat: (v) => fmt.num(v, 2),
      series: [...models.map((m, i) => ({ name: m, ys: leads.map((l) => at(m, l, "roc_auc")), color: SERIES[i % SERIES.length], dots: true })),
        { name: "Coin", ys: leads.map(() => 0.5), color: "#cbd5e0", dash: "4 3", width: 1 }] }));
    const tab = el("div", { class: "panel" }, el("h3", {}, "ROC-AUC / PR-AUC per lead"),
      table(["Days before", "Decisions (churned)", ...models],
        leads.map((l) => [`${l} d`, `${fmt.int(at(models[0], l, "decisions"))} (${fmt.int(at(models[0], l, "churned"))})`,
          ...models.map((m) => `${fmt.num(at(m, l, "roc_auc"), 3)} / ${fmt.num(at(m, l, "pr_auc"), 3)}`)]), [0, 1, ...models.map(() => 1)]));
    row.append(chart);
    ewBody.append(row, tab);
  } else ewBody.append(el("p", { class: "muted" }, "No early-warning backtest for this model (too short a labelled history, or trained by an older version)."));

  // Renewal forecast: next months and quarter (from this scoring run), and past months' forecasts against what was lost.
  const fc = D.forecast;
  const fcBody = byId("forecast-body");
  if (fc && fc.periods && fc.periods.length) {
    fcBody.append(el("p", { class: "muted" }, `As of ${fc.as_of}. Expected ARR lost is each renewal's risk times its ARR (an account can be lost once); ` +
      `the ${fmt.pct(fc.level)} interval is the range of ARR lost the independent outcomes give ${fmt.pct(fc.level)} of the time.`));
    fcBody.append(table(["Period", "Accounts renewing", "ARR up for renewal", "Expected ARR lost", `${fmt.pct(fc.level)} interval`, "Expected accounts lost"],
      fc.periods.map((p) => [p.period, fmt.int(p.accounts), fmt.money(p.arr_up_for_renewal), fmt.money(p.expected_arr_lost),
        `${fmt.money(p.low)} – ${fmt.money(p.high)}`, fmt.num(p.expected_accounts_lost, 1)]), [0, 1, 1, 1, 1, 1]));
    const quarter = fc.periods[fc.periods.length - 1].period;
    const carriers = (fc.top_accounts || {})[quarter] || [];
    if (carriers.length) {
      fcBody.append(el("h3", {}, `The accounts that carry most of ${quarter}'s expected loss`));
      fcBody.append(table(["Account", "First renewal", "ARR", "Chance lost", "Expected ARR lost", "Share"],
        carriers.map((c) => [c.account_name || c.account_id, c.first_renewal_date, fmt.money(c.arr), fmt.pct(c.probability_lost, 1),
          fmt.money(c.expected_arr_lost), fmt.pct(c.share, 1)]), [0, 0, 1, 1, 1, 1]));
    }
  } else fcBody.append(el("p", { class: "muted" }, "No renewal forecast beside these scores (score again with this version)."));
  const past = bt.available && bt.forecast_check ? bt.forecast_check : [];
  if (past.length) {
    const inside = past.filter((r) => r.inside).length;
    fcBody.append(el("h3", {}, "Past months: the forecast made before each month against the ARR actually lost"));
    fcBody.append(el("p", { class: "muted" }, `Backtest: each month forecast from the last snapshot before it by the model of that time. ` +
      `The actual loss fell inside the 80% interval in ${inside} of ${past.length} months; forecast ${fmt.money(past.reduce((a, r) => a + r.expected_arr_lost, 0))} ` +
      `against ${fmt.money(past.reduce((a, r) => a + r.actual_arr_lost, 0))} lost in total.`));
    const thousands = (v) => v == null ? "–" : "$" + Math.round(v / 1000).toLocaleString("en-US") + "k";
    fcBody.append(lines({ xs: past.map((r) => String(r.month).slice(0, 7)), yMin: 0, yFormat: thousands,
      series: [{ name: "Expected ARR lost", ys: past.map((r) => r.expected_arr_lost), color: SERIES[0], dots: true },
        { name: "Actual ARR lost", ys: past.map((r) => r.actual_arr_lost), color: SERIES[1], dots: true },
        { name: "80% interval (high)", ys: past.map((r) => r.high), color: "#cbd5e0", dash: "4 3", width: 1 },
        { name: "80% interval (low)", ys: past.map((r) => r.low), color: "#cbd5e0", dash: "4 3", width: 1 }] }, 720, 220));
  }
  if (!bt.available) {
    byId("weights-chart").append(el("p", { class: "muted" }, "The model's training run is not in this MLflow store."));
    byId("backtest-body").append(el("p", { class: "muted" }, "The model's training run is not in this MLflow store."));
  }
  function scatterLines(series, max, width = 420, height = 220) {
    const m = { l: 40, r: 10, t: 10, b: 26 }, W = width - m.l - m.r, H = height - m.t - m.b;
    const X = (v) => m.l + W * v / max, Y = (v) => m.t + H * (1 - v / max);
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
    s.append(svg("line", { x1: X(0), y1: Y(0), x2: X(max), y2: Y(max), stroke: "#cbd5e0", "stroke-dasharray": "4 3" }));
    for (const t of [0, max / 2, max]) {
      s.append(svg("text", { x: X(t), y: height - 6, "text-anchor": t === 0 ? "start" : t === max ? "end" : "middle" }, fmt.pct(t)));
      s.append(svg("text", { x: m.l - 4, y: Y(t) + 4, "text-anchor": "end" }, fmt.pct(t)));
    }
    series.forEach((ser, k) => {
      const d = ser.xs.map((x, i) => (i ? "L" : "M") + X(x).toFixed(1) + "," + Y(ser.ys[i]).toFixed(1)).join("");
      s.append(svg("path", { d, fill: "none", stroke: ser.color, "stroke-width": 2 }));
      s.append(svg("rect", { x: m.l + 8, y: m.t + 4 + 14 * k, width: 10, height: 3, fill: ser.color }));
      s.append(svg("text", { x: m.l + 22, y: m.t + 9 + 14 * k }, ser.name));
    });
    return s;
  }

  // Freshness: the monitor's verdict when the scoring run wrote one, else days behind only.
  const M = D.monitor;
  const flag = (bad) => el("span", { class: "chip", style: "background:" + (bad ? "#c53030" : "#38a169") }, bad ? "stale" : "current");
  if (M) {
    const rows = new Map(D.freshness.map((f) => [f.source, f.rows]));
    byId("freshness-table").append(table(["Source", "Rows", "Last record", "Days behind", "Stale after", "Status"],
      M.freshness.map((f) => [f.source, fmt.int(rows.get(f.source)), f.last_record || "–",
        f.days_behind == null ? "–" : fmt.int(f.days_behind), fmt.int(f.limit_days) + " days", flag(f.stale)]),
      [0, 1, 0, 1, 1, 0]));
  } else {
    byId("freshness-table").append(table(["Source", "Rows", "Last record", "Days behind the as-of date"],
      D.freshness.map((f) => [f.source, fmt.int(f.rows), f.last_record || "–", f.days_behind == null ? "–" : fmt.int(f.days_behind)]), [0, 1, 0, 1]));
  }

  // Monitoring: alerts, drift, coverage, realised performance.
  const mon = byId("monitoring-body");
  if (!M) {
    mon.append(el("p", { class: "muted" }, "No monitoring findings beside these scores (score again with this version to get them)."));
  } else {
    const a = M.alerts;
    const said = [];
    if (a.stale_sources.length) said.push("stale sources: " + a.stale_sources.join(", "));
    if (a.shifted_metrics.length) said.push("metrics shifted since training: " + a.shifted_metrics.join(", "));
    if (a.coverage_drops.length) said.push("less data than at training for: " + a.coverage_drops.join(", "));
    mon.append(el("p", { id: "monitor-verdict", class: M.ok ? "ok" : "alert" },
      M.ok ? "No alerts: every source is current, no metric has shifted since training, coverage is as at training."
        : "Alerts — " + said.join("; ") + ". Check the feeds before acting on these scores."));
    if (M.note) mon.append(el("p", { class: "muted" }, M.note));
    const row = el("div", { class: "row" });
    if (M.drift) {
      const top = M.drift.filter((d) => d.status !== "clock").slice(0, 12);
      mon.append(el("div", { class: "panel" }, el("h3", {}, "Drift against the training date (PSI, largest first)"),
        table(["Metric", "PSI", "Status", "Missing"],
          top.map((d) => [d.metric, fmt.num(d.psi, 2), d.status, fmt.pct(d.missing_then) + " → " + fmt.pct(d.missing_now)]), [0, 1, 0, 1]),
        el("p", { class: "muted" }, `PSI below ${M.thresholds.psi_watch} is stable, above ${M.thresholds.psi_shift} a shift (plus the noise a book of this size shows by chance). Tenure and term length move with the calendar and are not alerted.`)));
      row.append(el("div", { class: "panel" }, el("h3", {}, "Accounts with data, per metric group"),
        table(["Group", "At training", "Now", ""], M.coverage.map((c) => [c.group, fmt.pct(c.training), fmt.pct(c.now), c.flagged ? "fell" : ""]), [0, 1, 1, 0])));
    }
    const perf = M.performance || [];
    row.append(el("div", { class: "panel" }, el("h3", {}, "Realised performance of past runs"),
      perf.length ? table(["Run", "Accounts", "Churned", "ROC-AUC", "Predicted churn", "Observed churn", "Brier"],
        perf.map((p) => [p.as_of_date, fmt.int(p.accounts), fmt.int(p.churned), p.roc_auc == null ? "–" : fmt.num(p.roc_auc, 3),
          fmt.pct(p.mean_predicted, 1), fmt.pct(p.observed_rate, 1), fmt.num(p.brier, 3)]), [0, 1, 1, 1, 1, 1, 1])
        : el("p", { class: "muted" }, "No score run has known outcomes yet: a run's outcomes are known horizon + grace days after it.")));
    mon.append(row);
  }

  // ----------------------------------------------------------------- account table
  const COLS = [["account_name", "Account", "text"], ["band", "Band", "band"], ["health_score", "Score", "num"],
    ["score_change", "Change", "signed"], ["falling_runs", "Runs falling", "num0"], ["runs_in_band", "Runs in band", "num0"],
    ["arr", "ARR", "money"], ["top_risks", "Top risk", "risk"], ["action", "Suggested action", "action"]];
  const bandRank = new Map(meta.bands.map((b, i) => [b, i]));
  let sortKey = "health_score", sortDir = 1;
  const head = byId("account-table").querySelector("thead"), body = byId("account-table").querySelector("tbody");
  head.append(el("tr", {}, ...COLS.map(([key, label, kind]) => {
    const th = el("th", { class: ["num", "num0", "signed", "money"].includes(kind) ? "num" : "", "data-key": key }, label);
    th.addEventListener("click", () => { sortDir = sortKey === key ? -sortDir : 1; sortKey = key; draw(); });
    return th;
  })));
  const bandSelect = byId("band-filter");
  bandSelect.append(el("option", { value: "" }, "All bands"), ...meta.bands.map((b) => el("option", { value: b }, b === "insufficient_data" ? "Insufficient data" : b)));
  byId("filter").addEventListener("input", draw);
  bandSelect.addEventListener("change", draw);
  function value(a, key) { return key === "band" ? bandRank.get(a.band) : key === "account_name" ? nameOf(a).toLowerCase() : a[key]; }
  function draw() {
    const q = byId("filter").value.trim().toLowerCase(), band = bandSelect.value;
    const rows = D.accounts.filter((a) => (!band || a.band === band) &&
      (!q || [nameOf(a), a.account_id, a.top_risks, a.action].some((t) => String(t || "").toLowerCase().includes(q))));
    rows.sort((a, b) => {
      const x = value(a, sortKey), y = value(b, sortKey);
      if (x == null && y == null) return 0; if (x == null) return 1; if (y == null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    head.querySelectorAll("th").forEach((th) => { th.classList.remove("sorted-asc", "sorted-desc"); if (th.dataset.key === sortKey) th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc"); });
    body.replaceChildren(...rows.slice(0, 1000).map((a) => {
      const tr = el("tr", { "data-account": a.account_id }, ...COLS.map(([key, , kind]) => {
        const v = a[key];
        const shown = kind === "band" ? chip(v) : kind === "num" ? fmt.num(v) : kind === "num0" ? fmt.int(v) : kind === "signed" ? fmt.signed(v)
          : kind === "money" ? fmt.money(v) : kind === "risk" ? String(v || "").split(" | ")[0] : kind === "action" ? String(v || "").split(" | ").slice(-1)[0] : (key === "account_name" ? nameOf(a) : v);
        return el("td", { class: ["num", "num0", "signed", "money"].includes(kind) ? "num" : "" }, shown);
      }));
      tr.addEventListener("click", () => openCard(a.account_id));
      return tr;
    }));
    byId("count").textContent = `${fmt.int(rows.length)} of ${fmt.int(D.accounts.length)} accounts` + (rows.length > 1000 ? " (first 1,000 shown: filter to narrow)" : "");
  }
  draw();

  // ----------------------------------------------------------------- account card
  function openCard(id) {
    const a = accounts.get(id);
    if (!a) return;
    const c = D.cards[id];
    byId("card-title").replaceChildren(nameOf(a) + " ", chip(a.band));
    const since = a.band_since ? ` since ${String(a.band_since).slice(0, 10)} (${fmt.int(a.runs_in_band)} run(s))` : "";
    const falling = a.falling_runs > 0 ? ` Falling for ${fmt.int(a.falling_runs)} run(s) in a row.` : "";
    byId("card-summary").textContent = a.health_score == null ? a.drivers :
      `Health ${fmt.num(a.health_score)} (${fmt.signed(a.score_change)} since the last run), churn probability ${fmt.pct(a.churn_probability, 1)} ` +
      `within ${meta.horizon_days} days` + (a.renewal_risk != null ? `, ${fmt.pct(a.renewal_risk, 1)} risk of churning at its next renewal (${String(a.renewal_date).slice(0, 10)})` : "") +
      `, ARR ${fmt.money(a.arr)}. In this band${since}.${falling} Account id: ${a.account_id}.`;
    const hist = byId("card-history"); hist.replaceChildren();
    if (c && c.runs.dates.length) {
      hist.append(lines({ xs: c.runs.dates, yMin: 0, yMax: 100, series: [{ name: "Health score", ys: c.runs.scores, color: "#1f2933", dots: true, dotColors: c.runs.bands.map((b) => COLORS[b] || "#718096") }],
        bands: meta.fixed_thresholds.length ? [{ from: 0, to: 40, color: COLORS["Critical"] }, { from: 40, to: 60, color: COLORS["At-risk"] }, { from: 60, to: 80, color: COLORS["Healthy"] }, { from: 80, to: 100, color: COLORS["Thriving"] }] : [] }));
    } else hist.append(el("p", { class: "muted" }, c ? "No earlier runs." : `Cards are built for the ${fmt.int(meta.max_cards)} riskiest accounts.`));
    const wf = byId("card-waterfall"); wf.replaceChildren();
    const groups = Object.entries(a.groups || {}).filter(([, v]) => v != null && Math.abs(v) >= 0.05).sort((x, y) => x[1] - y[1]);
    const start = a.reference_score != null ? a.reference_score : meta.reference_score;
    if (a.health_score != null && start != null) wf.append(waterfall(start, groups.map(([g, v]) => ({ label: g, value: v })), a.health_score));
    else wf.append(el("p", { class: "muted" }, "Not scored."));
    for (const [key, target] of [["top_risks", "card-risks"], ["top_strengths", "card-strengths"], ["action", "card-actions"]]) {
      const items = String(a[key] || "").split(" | ").filter((t) => t);
      byId(target).replaceChildren(...(items.length ? items.map((t) => el("li", {}, t)) : [el("li", { class: "muted" }, "None")]));
    }
    const grid = byId("card-metrics"); grid.replaceChildren();
    if (c && c.metrics.dates) {
      for (const [m, label] of Object.entries(D.metric_labels)) {
        const med = c.metrics.dates.map((d) => { const i = D.medians.dates.indexOf(d); return i < 0 ? null : D.medians[m][i]; });
        grid.append(el("div", { class: "panel" }, el("h3", {}, label),
          lines({ xs: c.metrics.dates, series: [{ name: "This account", ys: c.metrics[m], color: SERIES[0] }, { name: "Portfolio median", ys: med, color: "#a0aec0", dash: "4 3" }], legend: false }, 300, 150)));
      }
    }
    byId("card").hidden = false;
    if (location.hash !== "#account=" + encodeURIComponent(id)) history.replaceState(null, "", "#account=" + encodeURIComponent(id));
  }
  function closeCard() { byId("card").hidden = true; history.replaceState(null, "", "#accounts"); }
  byId("card-close").addEventListener("click", closeCard);
  byId("card").addEventListener("click", (e) => { if (e.target === byId("card")) closeCard(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeCard(); });
  if (location.hash.startsWith("#account=")) openCard(decodeURIComponent(location.hash.slice(9)));
  byId("footer").textContent = `healthscore · ${D.accounts.length.toLocaleString("en-US")} accounts · self-contained report (no network).`;
  document.body.dataset.ready = "1";
})();
