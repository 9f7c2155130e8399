// spillway dashboard: polls /api/state every second and draws it; the
// buttons post to /api/* with the admin token. Plain JS, no dependencies.
// Every value from the server reaches the page through textContent or an
// attribute, never as HTML.
'use strict';
(function () {
  const TOKEN_KEY = 'spillway.dashboard.token';
  const POLL_MS = 1000;
  const WINDOW_S = 300;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const DASH = '—';

  // Outcomes in stacking order; failed includes client timeouts.
  const STACK = [
    { key: 'ok', label: 'ok', from: ['ok'] },
    { key: 'client_error', label: '401 / 4xx', from: ['client_error'] },
    { key: 'shed', label: '503 shed', from: ['shed'] },
    { key: 'overloaded', label: '503 overloaded', from: ['overloaded'] },
    { key: 'failed', label: '5xx / timeout', from: ['failed', 'client_timeout'] },
  ];

  const $ = (id) => document.getElementById(id);

  // el builds an element: attrs are attributes ("text" sets textContent,
  // "class" the class, "on<event>" a listener); kids are nodes or strings.
  function el(tag, attrs, ...kids) {
    const svg = tag.startsWith('svg:');
    const e = svg ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const first = (...vs) => vs.find((v) => v !== undefined && v !== null);
  function fmt(v, digits = 0) {
    return isNum(v) ? v.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits }) : DASH;
  }
  function fmtMs(ms) {
    if (!isNum(ms) || ms <= 0) return DASH;
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 1) + ' s';
    if (ms >= 10) return Math.round(ms) + ' ms';
    return ms.toFixed(ms >= 1 ? 1 : 2) + ' ms';
  }
  function parseTime(s) {
    if (!s || typeof s !== 'string' || s.startsWith('0001-')) return null;
    const t = Date.parse(s);
    return Number.isFinite(t) ? t : null;
  }
  function clock(t) {
    return t === null ? DASH : new Date(t).toLocaleTimeString([], { hour12: false });
  }
  function ago(t, now) {
    if (t === null) return DASH;
    const s = Math.max(0, Math.round((now - t) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's ago';
    return clock(t);
  }
  function cssId(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, '_'); }

  // ---- token ---------------------------------------------------------

  let token = null;

  function initToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      try { token = decodeURIComponent(m[1]); } catch (e) { token = m[1]; }
      // Keep it out of the address bar, history and screenshots.
      history.replaceState(null, '', location.pathname + location.search);
    } else {
      try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
    }
    setToken(token);
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('token-input').value.trim();
      $('token-input').value = '';
      setToken(v || null);
      if (v) toast('Token saved for this tab.');
    });
    $('btn-token-change').addEventListener('click', () => {
      $('auth').dataset.state = 'editing';
      $('token-input').focus();
    });
  }

  function setToken(v) {
    token = v || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: keep it in memory */ }
    $('auth').dataset.state = token ? 'set' : 'none';
    $('token-state').textContent = token ? 'admin token set' : 'controls need the admin token';
  }

  // ---- API -----------------------------------------------------------

  // send posts a control; it returns true on success and reports the
  // outcome in the toast.
  async function send(method, path, body, label) {
    if (!token) {
      toast(label + ': enter the admin token first (it is printed by spillway up).', 'error');
      $('auth').dataset.state = 'none';
      $('token-input').focus();
      return false;
    }
    let res, data = {};
    try {
      res = await fetch(path, {
        method,
        headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
      try { data = await res.json(); } catch (e) { data = {}; }
    } catch (e) {
      toast(label + ': ' + e.message, 'error');
      return false;
    }
    if (res.status === 401) {
      setToken(null);
      toast(label + ': the admin token was refused; enter it again.', 'error');
      return false;
    }
    if (!res.ok) {
      let msg = label + ' failed: ' + (data.error || 'HTTP ' + res.status);
      if (data.detail) msg += ' (' + data.detail + ')';
      if (data.request_id) msg += ' · request ' + data.request_id;
      toast(msg, 'error');
      return false;
    }
    toast(label + ': done.');
    refreshSoon();
    return true;
  }

  // busy disables a button while its action runs.
  async function busy(btn, fn) {
    if (btn.disabled) return;
    btn.disabled = true;
    try { await fn(); } finally { btn.disabled = false; }
  }

  let toastTimer = 0;
  function toast(msg, kind) {
    const t = $('toast');
    t.textContent = msg;
    t.dataset.kind = kind || 'info';
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, kind === 'error' ? 8000 : 3500);
  }

  // ---- polling -------------------------------------------------------

  let pollTimer = 0, polling = false, again = false;
  let lastState = null;

  async function poll() {
    if (polling) { again = true; return; }
    polling = true;
    clearTimeout(pollTimer);
    const ctl = new AbortController();
    const abort = setTimeout(() => ctl.abort(), 4000);
    try {
      // The token goes along when the page has one: on a listener other
      // machines can reach, reads need it too.
      const headers = token ? { 'Authorization': 'Bearer ' + token } : {};
      const res = await fetch('/api/state', { cache: 'no-store', signal: ctl.signal, headers });
      if (res.status === 401) {
        $('auth').dataset.state = 'none';
        throw new Error('this dashboard needs the admin token to show anything; enter it above');
      }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const st = await res.json();
      lastState = st;
      render(st);
      setConn('live', 'live · ' + clock(parseTime(st.time) ?? Date.now()));
    } catch (e) {
      setConn('error', 'disconnected: ' + (e.name === 'AbortError' ? 'timeout' : e.message));
    } finally {
      clearTimeout(abort);
      polling = false;
      pollTimer = setTimeout(poll, again ? 0 : POLL_MS);
      again = false;
    }
  }
  function refreshSoon() { clearTimeout(pollTimer); poll(); }
  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function render(st) {
    const now = parseTime(st.time) ?? Date.now();
    const model = buildModel(st);
    for (const [name, fn] of [
      ['controls', () => renderControls(st)],
      ['summary', () => renderSummary(st, model)],
      ['chart', () => renderChart(st, now)],
      ['dependencies', () => renderDeps(st, model)],
      ['instances', () => renderInstances(st, model, now)],
      ['events', () => renderEvents(st)],
    ]) {
      try { fn(); } catch (e) { console.error('render ' + name, e); }
    }
  }

  // ---- model: the LB and fleet documents, read defensively -------------

  function buildModel(st) {
    const lb = st.lb && typeof st.lb === 'object' ? st.lb : {};
    const fleetDoc = st.fleet;
    const fleetList = Array.isArray(fleetDoc) ? fleetDoc
      : (fleetDoc && Array.isArray(fleetDoc.instances) ? fleetDoc.instances : []);
    const lbList = Array.isArray(lb.instances) ? lb.instances.filter((x) => x && typeof x === 'object') : [];

    const used = new Set();
    const rows = lbList.map((i) => {
      const f = fleetList.find((f, k) => !used.has(k) && f && (f.id === i.id || (f.service && (f.service === i.id || f.service === i.service))));
      if (f) used.add(fleetList.indexOf(f));
      return { id: String(first(i.id, i.service, '?')), lb: i, fleet: f || null };
    });
    fleetList.forEach((f, k) => {
      if (!used.has(k) && f && typeof f === 'object') rows.push({ id: String(first(f.id, f.service, '?')), lb: null, fleet: f });
    });

    // Dependencies: the LB's edge view, joined with what instances report.
    const edgeList = Array.isArray(lb.dependencies) ? lb.dependencies : (Array.isArray(lb.shedding) ? lb.shedding : []);
    const deps = new Map();
    const dep = (name) => {
      if (!deps.has(name)) deps.set(name, { name, edge: null, up: 0, down: 0, unknown: 0, breakers: new Map() });
      return deps.get(name);
    };
    for (const d of edgeList) if (d && d.name) dep(String(d.name)).edge = d;
    for (const r of rows) {
      const rep = r.lb && r.lb.report;
      if (!rep || typeof rep.dependencies !== 'object' || rep.dependencies === null) continue;
      if (r.lb.state === 'drained' || r.lb.state === 'draining') continue;
      for (const [name, v] of Object.entries(rep.dependencies)) {
        const d = dep(name);
        const s = v && v.state;
        if (s === 'up') d.up++; else if (s === 'down') d.down++; else d.unknown++;
        const b = v && v.breaker;
        if (b) d.breakers.set(b, (d.breakers.get(b) || 0) + 1);
      }
    }
    for (const d of deps.values()) {
      let reporting = d.up + d.down + d.unknown;
      let down = d.down;
      if (reporting === 0 && d.edge && isNum(d.edge.ready) && d.edge.ready > 0) {
        reporting = d.edge.ready;
        down = isNum(d.edge.down) ? d.edge.down : 0;
        d.up = reporting - down;
        d.down = down;
      }
      d.reporting = reporting;
      d.state = reporting === 0 ? 'unknown'
        : down * 2 >= reporting && down > 0 ? 'down'
          : down > 0 ? 'degraded'
            : d.up > 0 ? 'up' : 'unknown';
    }
    return { lb, fleetDoc, rows, deps: [...deps.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  }

  function displayState(r) {
    const f = r.fleet, i = r.lb;
    if (f && (f.state === 'replaced' || f.state === 'stopping')) return f.state;
    if (!i) return f && f.state === 'running' ? 'not routed' : ((f && f.state) || 'unknown');
    switch (i.state) {
      case 'pending': return 'starting';
      case 'healthy': return isNum(i.weight) && i.weight < 0.995 ? 'slow start' : 'ready';
      default: return i.state || 'unknown';
    }
  }
  const STATE_TONE = {
    'ready': 'good', 'slow start': 'info', 'starting': '', 'not routed': '',
    'unhealthy': 'bad', 'ejected': 'bad', 'draining': 'warn', 'drained': '',
    'stopping': 'warn', 'replaced': 'violet', 'unknown': '',
  };

  // ---- controls and summary ------------------------------------------

  function renderControls(st) {
    const c = st.controls || {};
    $('btn-break').hidden = !c.backend;
    $('btn-restore').hidden = !c.backend;
    $('group-backend').hidden = !c.backend && !st.backend;
    $('btn-load-start').hidden = !c.load_start;
    $('btn-load-stop').hidden = !c.load_stop;
    for (const id of ['load-rps', 'load-seconds']) $(id).closest('label').hidden = !c.load_start;
    $('group-load').hidden = !c.load_start && !c.load_stop && !st.load;
    $('group-fleet').hidden = !c.restart;
    $('no-controls').hidden = Object.values(c).some(Boolean);
    if (st.limits) {
      $('load-rps').max = st.limits.max_rps;
      $('load-seconds').max = st.limits.max_seconds;
    }

    const mode = st.backend && typeof st.backend === 'object' ? st.backend.mode : null;
    const bm = $('backend-mode');
    bm.textContent = mode ? String(mode) : '';
    bm.dataset.mode = mode ? String(mode) : '';
    bm.className = 'badge ' + (mode === 'up' ? 'good' : mode ? 'bad' : '');

    const load = st.load && typeof st.load === 'object' ? st.load : null;
    const ls = $('load-status');
    if (load && load.running) {
      const ends = parseTime(load.ends);
      const left = ends === null ? '' : ' · ' + Math.max(0, Math.round((ends - (parseTime(st.time) ?? Date.now())) / 1000)) + ' s left';
      ls.textContent = 'sending ' + fmt(load.rps) + ' req/s' + left;
      ls.dataset.running = 'true';
    } else {
      ls.textContent = load ? 'idle' : '';
      ls.dataset.running = 'false';
    }
  }

  function renderSummary(st, m) {
    const lb = m.lb;
    const pills = [];
    const pill = (label, value, tone, id) => el('span', { class: 'pill ' + (tone || ''), id, 'data-testid': id }, label + ' ', el('b', { text: value }));
    const routing = lb.routing && typeof lb.routing === 'object' ? lb.routing : null;
    const healthy = m.rows.filter((r) => r.lb && r.lb.state === 'healthy').length;
    if (routing && isNum(routing.routable)) {
      const of = first(routing.members, routing.instances);
      pills.push(pill('routable', routing.routable + (isNum(of) ? ' / ' + of : ''), routing.routable === 0 ? 'bad' : (isNum(of) && routing.routable < of ? 'warn' : 'good'), 'pill-routable'));
    } else if (m.rows.length) {
      pills.push(pill('healthy', healthy + ' / ' + m.rows.length, healthy === 0 ? 'bad' : healthy < m.rows.length ? 'warn' : 'good', 'pill-routable'));
    }
    if (typeof lb.panic === 'boolean') pills.push(pill('panic mode', lb.panic ? 'on' : 'off', lb.panic ? 'bad' : '', 'pill-panic'));
    const cap = lb.capacity;
    if (cap && typeof cap === 'object') {
      const v = cap.bounded === false || !isNum(cap.limit) || cap.limit === 0 ? fmt(cap.in_flight) + ' / unbounded' : fmt(cap.in_flight) + ' / ' + fmt(cap.limit);
      pills.push(pill('edge in flight', v, '', 'pill-capacity'));
    } else if (isNum(cap)) {
      pills.push(pill('capacity', fmt(cap), '', 'pill-capacity'));
    }
    // Several LBs: this one's part of the fleet's capacity (its share).
    if (cap && typeof cap === 'object' && isNum(cap.share) && isNum(cap.peers) && (cap.peers > 1 || lb.shared || lb.discovery)) {
      pills.push(pill('capacity share', Math.round(cap.share * 100) + '% · ' + cap.peers + (cap.peers === 1 ? ' LB' : ' LBs'), '', 'pill-share'));
    }
    // The discovery source (etcd): whether it answers; the LB keeps what
    // it knew while it does not.
    const disc = lb.discovery && typeof lb.discovery === 'object' ? lb.discovery : null;
    if (disc) {
      const now = parseTime(st.time) ?? Date.now();
      const since = parseTime(disc.unreachable_since);
      const shared = lb.shared && typeof lb.shared === 'object' ? lb.shared : null;
      let v = disc.connected ? 'connected' : 'unreachable' + (since !== null ? ' since ' + clock(since) : '') + ', serving with what it knew';
      v += ' · last sync ' + ago(parseTime(disc.last_sync), now);
      if (shared && isNum(shared.pending) && shared.pending > 0) v += ' · ' + shared.pending + (shared.pending === 1 ? ' change' : ' changes') + ' not shared yet';
      const p = pill(String(disc.source || 'discovery'), v, disc.connected ? 'good' : 'bad', 'pill-etcd');
      p.dataset.state = disc.connected ? 'connected' : 'unreachable';
      pills.push(p);
    }
    const shedding = m.deps.filter((d) => d.edge && d.edge.state === 'shedding').map((d) => d.name);
    const ramping = m.deps.filter((d) => d.edge && d.edge.state === 'recovering').map((d) => d.name + ' (recovering)');
    const edge = shedding.concat(ramping);
    if (m.deps.length) pills.push(pill('edge shedding', edge.length ? edge.join(', ') : 'none', edge.length ? 'warn' : 'good', 'pill-shedding'));
    const fd = m.fleetDoc;
    if (fd && typeof fd === 'object' && !Array.isArray(fd) && typeof fd.frozen === 'boolean') {
      pills.push(pill('fleet replacement', fd.frozen ? 'frozen' : 'active', fd.frozen ? 'warn' : '', 'pill-fleet'));
    }
    $('summary').replaceChildren(...pills);
  }

  // ---- chart ---------------------------------------------------------

  function niceCeil(v) {
    if (!(v > 0)) return 10;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function renderChart(st, now) {
    const svg = $('chart');
    const W = 960, H = 300, L = 52, R = 58, T = 26, B = 26;
    const pw = W - L - R, ph = H - T - B;
    const series = Array.isArray(st.series) ? st.series : [];
    const pts = series.map((p) => {
      const t = parseTime(p.t);
      const c = p.counts || {};
      const vals = STACK.map((s) => s.from.reduce((a, k) => a + (isNum(c[k]) ? c[k] : 0), 0));
      return { t, vals, total: vals.reduce((a, b) => a + b, 0), p99: p.ok_p99_ms, p99o: p.failed_p99_ms };
    }).filter((p) => p.t !== null);

    const end = pts.length ? pts[pts.length - 1].t + 1000 : now;
    const x = (t) => L + pw * (1 - (end - t) / 1000 / WINDOW_S);
    const ymax = niceCeil(Math.max(10, ...pts.map((p) => p.total)));
    const y = (v) => T + ph * (1 - v / ymax);
    // Latency: log scale from 1 ms to 10 s.
    const lmin = 0, lmax = 4;
    const ly = (ms) => T + ph * (1 - (Math.log10(Math.max(1, Math.min(ms, 10000))) - lmin) / (lmax - lmin));

    const kids = [];
    for (let k = 0; k <= 4; k++) {
      const v = ymax * k / 4, yy = y(v);
      kids.push(el('svg:line', { class: 'grid-line', x1: L, x2: W - R, y1: yy, y2: yy }));
      kids.push(el('svg:text', { class: 'axis-label', x: L - 8, y: yy + 4, 'text-anchor': 'end', text: fmt(v, v % 1 ? 1 : 0) }));
    }
    for (let e = lmin; e <= lmax; e++) {
      kids.push(el('svg:text', { class: 'axis-label', x: W - R + 8, y: ly(Math.pow(10, e)) + 4, text: fmtMs(Math.pow(10, e)) }));
    }
    kids.push(el('svg:text', { class: 'axis-label', x: L, y: 11, text: 'requests/s (stacked)' }));
    kids.push(el('svg:text', { class: 'axis-label', x: W - 4, y: 11, 'text-anchor': 'end', text: 'p99 latency' }));
    for (let m = 5; m >= 0; m--) {
      kids.push(el('svg:text', { class: 'axis-label', x: x(end - m * 60000), y: H - 6, 'text-anchor': m === 5 ? 'start' : m === 0 ? 'end' : 'middle', text: m === 0 ? 'now' : '−' + m + ' min' }));
    }

    if (pts.length === 0) {
      kids.push(el('svg:text', { class: 'nodata', x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle', text: 'No requests recorded yet' }));
    } else {
      // Stacked areas: each layer between the cumulative sums below and
      // above it; a point sits at the middle of its second.
      const base = pts.map(() => 0);
      STACK.forEach((s, k) => {
        const top = pts.map((p, i) => base[i] + p.vals[k]);
        if (top.some((v, i) => v > base[i])) {
          let d = '';
          pts.forEach((p, i) => { d += (i ? 'L' : 'M') + x(p.t + 500).toFixed(1) + ',' + y(top[i]).toFixed(1); });
          for (let i = pts.length - 1; i >= 0; i--) d += 'L' + x(pts[i].t + 500).toFixed(1) + ',' + y(base[i]).toFixed(1);
          kids.push(el('svg:path', { class: 'area-' + s.key, d: d + 'Z' }, el('svg:title', { text: s.label })));
        }
        top.forEach((v, i) => { base[i] = v; });
      });
      // p99 lines, broken where a second had no such request.
      for (const [key, cls] of [['p99', 'line-p99'], ['p99o', 'line-p99-other']]) {
        let d = '', pen = false;
        for (const p of pts) {
          if (isNum(p[key]) && p[key] > 0) {
            d += (pen ? 'L' : 'M') + x(p.t + 500).toFixed(1) + ',' + ly(p[key]).toFixed(1);
            pen = true;
          } else pen = false;
        }
        if (d) kids.push(el('svg:path', { class: cls, d }));
      }
    }
    // Event markers.
    for (const ev of Array.isArray(st.events) ? st.events : []) {
      const t = parseTime(ev.time);
      if (t === null || t < end - WINDOW_S * 1000 || t > end) continue;
      const xx = x(t);
      kids.push(el('svg:line', { class: 'marker', x1: xx, x2: xx, y1: T, y2: T + ph },
        el('svg:title', { text: clock(t) + ' ' + (ev.kind || '') + ': ' + (ev.message || '') })));
    }
    svg.replaceChildren(...kids);

    // KPIs: the mean of the last 5 seconds.
    const last = pts.slice(-5);
    const mean = (f) => last.length ? last.reduce((a, p) => a + f(p), 0) / last.length : NaN;
    const maxOf = (f) => { const v = last.map(f).filter((v) => isNum(v) && v > 0); return v.length ? Math.max(...v) : NaN; };
    // Each KPI carries its raw value in data-value, for tests and tools.
    const kpi = (key, label, raw, text, sw) => el('div', { class: 'kpi', 'data-kpi': key, 'data-value': isNum(raw) ? raw : '' },
      el('div', { class: 'v', text }), el('div', { class: 'k' }, sw ? el('span', { class: 'swatch ' + sw }) : null, label));
    const total = mean((p) => p.total), p99 = maxOf((p) => p.p99), p99o = maxOf((p) => p.p99o);
    $('kpis').replaceChildren(
      kpi('total', 'requests/s', total, fmt(total)),
      ...STACK.map((s, k) => { const v = mean((p) => p.vals[k]); return kpi(s.key, s.label, v, fmt(v), s.key); }),
      kpi('p99_ok', 'p99 ok', p99, fmtMs(p99)),
      kpi('p99_others', 'p99 others', p99o, fmtMs(p99o)),
    );
    if (!$('legend').childElementCount) {
      $('legend').replaceChildren(
        ...STACK.map((s) => el('li', {}, el('span', { class: 'swatch ' + s.key }), s.label)),
        el('li', {}, el('span', { class: 'swatch line' }), 'p99 latency of ok (log scale, right)'),
        el('li', {}, el('span', { class: 'swatch line other' }), 'p99 latency of the others'),
        el('li', {}, el('span', { class: 'swatch line event' }), 'event'),
      );
    }
  }

  // ---- dependencies ----------------------------------------------------

  const SHED_TONE = { ok: 'good', shedding: 'bad', recovering: 'warn' };
  const DEP_TONE = { up: 'good', down: 'bad', degraded: 'warn', unknown: '' };

  // Elements keyed by id are kept across polls and updated in place, so a
  // button under the pointer is never swapped out between mousedown and
  // click; only their read-only parts are rebuilt, and only on change.

  // decided says who decides a dependency's shedding: this LB, from the
  // instances' reports (every LB reads the same reports, so they agree
  // without coordination), or an operator's override, and on which LB.
  function decided(edge) {
    const o = edge.override ? String(edge.override) : 'auto';
    if (o === 'auto') return 'auto (decided here from the instances\' reports)';
    const origin = edge.override_origin ? String(edge.override_origin) : 'local';
    let s = 'override ' + o;
    if (edge.override_pending) s += ' set here, not shared yet';
    else if (origin === 'local') s += ' set here';
    else s += ' from ' + origin;
    const at = parseTime(edge.override_at);
    return at === null ? s : s + ' · ' + clock(at);
  }

  function renderDeps(st, m) {
    const box = $('dependencies');
    const empty = box.querySelector('.empty');
    if (!m.deps.length) {
      if (!empty) box.replaceChildren(el('p', { class: 'muted empty', text: 'No dependency reported yet.' }));
      return;
    }
    if (empty) empty.remove();
    const canShed = !!(st.controls && st.controls.shedding);
    const keep = new Set();
    let prev = null;
    for (const d of m.deps) {
      const id = 'dep-' + cssId(d.name);
      keep.add(id);
      const edge = d.edge || {};
      const shedState = edge.state ? String(edge.state) : 'unknown';
      const override = edge.override ? String(edge.override) : '';
      const admitted = isNum(edge.admitted_share) ? edge.admitted_share : null;
      const breakers = [...d.breakers.entries()].map(([b, n]) => b + (n > 1 ? ' ×' + n : '')).join(', ');

      let node = $(id);
      if (!node) {
        const seg = el('div', { class: 'seg', role: 'group', 'aria-label': 'shedding override for ' + d.name },
          ...['auto', 'on', 'off'].map((mode) => el('button', {
            type: 'button', id: 'btn-shed-' + cssId(d.name) + '-' + mode, 'data-mode': mode,
            title: { auto: 'follow the instances\' reports', on: 'shed every request that needs it', off: 'never shed for it' }[mode],
            onclick: (ev) => busy(ev.currentTarget, () => send('POST', '/api/shedding', { dependency: d.name, mode }, 'Shedding ' + mode + ' for ' + d.name)),
            text: mode,
          })));
        node = el('div', { class: 'dep', id, 'data-testid': id, 'data-name': d.name },
          el('div', { class: 'dep-info' }),
          el('div', { class: 'dep-line dep-override' }, el('span', { text: 'override' }), el('span', {}, seg)));
      }
      node.dataset.state = d.state;
      node.dataset.shedding = shedState;
      node.dataset.override = override;
      node.dataset.origin = override && override !== 'auto' ? String(edge.override_origin || 'local') : '';
      node.querySelector('.dep-override').hidden = !canShed;
      for (const b of node.querySelectorAll('.seg button')) b.setAttribute('aria-pressed', String(b.dataset.mode === override));

      const sig = JSON.stringify([d.state, d.up, d.down, d.unknown, d.reporting, breakers, shedState, admitted, override, edge.override_origin, edge.override_pending, edge.override_at]);
      const info = node.querySelector('.dep-info');
      if (info.dataset.sig !== sig) {
        info.dataset.sig = sig;
        let edgeText = shedState;
        if (shedState === 'recovering' && admitted !== null) edgeText += ' · ' + Math.round(admitted * 100) + '% admitted';
        const instText = d.reporting ? (d.down ? d.down + ' of ' + d.reporting + ' report it down' : d.up + ' of ' + d.reporting + ' report it up') : 'no report yet';
        info.replaceChildren(
          el('div', { class: 'dep-head' },
            el('span', { class: 'dep-name', text: d.name }),
            el('span', { class: 'badge ' + (DEP_TONE[d.state] || ''), text: d.state })),
          el('div', { class: 'dep-line' }, el('span', { text: 'instances' }),
            el('span', {}, instText, breakers ? el('span', { class: 'muted', text: ' · breaker ' + breakers }) : null)),
          el('div', { class: 'dep-line' }, el('span', { text: 'edge' }),
            el('span', {}, el('span', { class: 'badge ' + (SHED_TONE[shedState] || ''), 'data-testid': 'shedding-' + cssId(d.name), text: edgeText }))),
          el('div', { class: 'dep-line' }, el('span', { text: 'shedding' }),
            el('span', { class: 'dep-decided', 'data-testid': 'decided-' + cssId(d.name), text: d.edge ? decided(edge) : DASH })),
          el('div', { class: 'dep-line' }, el('span', { text: 'admitted' }),
            el('span', { class: 'bar-wrap' }, bar(admitted), el('span', { class: 'muted', text: admitted === null ? DASH : Math.round(admitted * 100) + '%' }))),
        );
      }
      prev = place(box, node, prev);
    }
    for (const child of [...box.children]) if (!keep.has(child.id)) child.remove();
  }

  // place puts node right after prev (first when prev is null) in parent,
  // moving it only when it is elsewhere, and returns it.
  function place(parent, node, prev) {
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (node !== want) parent.insertBefore(node, want);
    return node;
  }

  function bar(share) {
    const tone = share === null ? '' : share >= 0.999 ? '' : share <= 0.001 ? 'bad' : 'warn';
    const i = el('i');
    i.style.width = share === null ? '0%' : Math.round(Math.max(0, Math.min(1, share)) * 100) + '%';
    return el('span', { class: 'bar ' + tone }, i);
  }

  // ---- instances -------------------------------------------------------

  function renderInstances(st, m, now) {
    const tbody = $('instances').tBodies[0];
    const canDrain = !!(st.controls && st.controls.drain);
    const keep = new Set();
    let prev = null;
    $('instances-empty').hidden = m.rows.length > 0;
    const taking = m.rows.filter((r) => ['ready', 'slow start'].includes(displayState(r))).length;
    $('instances-count').textContent = m.rows.length ? '· ' + taking + ' of ' + m.rows.length + ' taking traffic' : '';
    for (const r of m.rows) {
      const id = 'inst-' + cssId(r.id);
      keep.add(id);
      const i = r.lb || {}, f = r.fleet || {};
      const rep = i.report && typeof i.report === 'object' ? i.report : null;
      // Why the instance's latest report could not be used (lb's
      // report_error): shown where the report would be.
      const repErr = i.report_error && typeof i.report_error === 'object' ? i.report_error : null;
      const disp = displayState(r);
      const weight = isNum(i.weight) ? i.weight : null;
      const inflight = first(i.in_flight, i.outstanding);
      const reportAt = parseTime(i.report_at);
      const check = i.last_check ? String(i.last_check) : (f.last_check && typeof f.last_check === 'object' ? (f.last_check.ok ? 'pass' : 'fail') : null);
      const deps = rep && rep.dependencies && typeof rep.dependencies === 'object' ? Object.entries(rep.dependencies).sort(([a], [b]) => a.localeCompare(b)) : [];
      const drained = i.state === 'drained';

      let tr = $(id);
      if (!tr) {
        const btn = el('button', {
          type: 'button', class: 'small', id: 'btn-drain-' + cssId(r.id),
          // Reads the row's state at click time: the row outlives polls.
          onclick: (ev) => {
            const drain = ev.currentTarget.dataset.drain === 'true';
            busy(ev.currentTarget, () => send('POST', '/api/drain', { instance: r.id, drain }, (drain ? 'Drain ' : 'Undrain ') + r.id));
          },
        });
        tr = el('tr', { id, 'data-testid': 'instance', 'data-id': r.id }, el('td', { class: 'action' }, btn));
      }
      tr.dataset.state = i.state || 'unknown';
      tr.dataset.display = disp;
      tr.dataset.fleetState = f.state || '';
      const btn = tr.querySelector('td.action button');
      btn.hidden = !(canDrain && r.lb);
      btn.dataset.drain = drained ? 'false' : 'true';
      btn.textContent = drained ? 'Undrain' : 'Drain';

      const sig = JSON.stringify([disp, weight, inflight, rep, repErr, i.drain_origin, i.drain_pending, i.ejections, i.slow_start_end, i.ejected_until, i.health_since, f.id, f.state, f.reason, f.pid, f.restarts, check, Math.floor((now - (reportAt ?? now)) / 5000)]);
      if (tr.dataset.sig !== sig) {
        tr.dataset.sig = sig;
        let stateSub = null;
        if (disp === 'slow start') {
          const endT = parseTime(i.slow_start_end);
          stateSub = endT !== null ? 'full weight at ' + clock(endT) : null;
        } else if (i.state === 'ejected' && parseTime(i.ejected_until) !== null) {
          stateSub = 'until ' + clock(parseTime(i.ejected_until));
        } else if (i.state === 'drained' && i.drain_origin) {
          stateSub = i.drain_pending ? 'here, not shared yet' : i.drain_origin === 'local' ? 'here' : 'by ' + i.drain_origin;
        } else if (f.reason) {
          stateSub = String(f.reason);
        } else if (parseTime(i.health_since) !== null && i.state === 'healthy') {
          stateSub = 'since ' + clock(parseTime(i.health_since));
        }
        let report;
        if (repErr) {
          const since = parseTime(repErr.since);
          const detail = String(repErr.detail || '');
          report = el('td', { 'data-testid': 'report-error' },
            el('span', { class: 'badge bad', title: detail, text: 'report unusable: ' + String(repErr.reason || '?') }),
            el('span', { class: 'sub', title: detail, text: (detail.length > 80 ? detail.slice(0, 79) + '…' : detail) + (since !== null ? ' · since ' + clock(since) : '') }));
        } else if (rep) {
          const bits = [rep.ready ? 'ready' : 'not ready'];
          if (rep.phase && rep.phase !== (rep.ready ? 'ready' : '')) bits.push(String(rep.phase));
          if (rep.draining) bits.push('draining');
          report = el('td', {},
            el('span', { class: 'badge ' + (rep.ready ? 'good' : 'warn'), text: bits.join(' · ') }),
            el('span', { class: 'sub', text: 'in flight ' + fmt(rep.in_flight) + ' / limit ' + fmt(rep.limit) + (isNum(rep.queue) && rep.queue > 0 ? ' · queue ' + rep.queue : '') + ' · ' + ago(reportAt, now) }));
        } else {
          report = el('td', { class: 'muted', text: check ? 'check: ' + check : DASH });
        }
        const cells = [
          el('td', { class: 'id' }, r.id, f.id && f.id !== r.id ? el('span', { class: 'sub', text: f.id }) : (i.health ? el('span', { class: 'sub', text: 'health ' + i.health }) : null)),
          el('td', {}, el('span', { class: 'badge ' + (STATE_TONE[disp] ?? ''), text: disp }), stateSub ? el('span', { class: 'sub', text: stateSub }) : null),
          el('td', { class: 'num weight' }, el('span', { class: 'bar-wrap' }, bar(weight), el('span', { text: weight === null ? DASH : weight.toFixed(2) }))),
          el('td', { class: 'num', text: fmt(inflight) }),
          report,
          el('td', {}, deps.length ? el('span', { class: 'chips' }, ...deps.map(([name, v]) => {
            const s = (v && v.state) || 'unknown';
            return el('span', { class: 'badge ' + (DEP_TONE[s] || ''), title: 'breaker ' + ((v && v.breaker) || DASH) + (v && v.last_error ? ' · ' + v.last_error : ''), text: name + ': ' + s });
          })) : el('span', { class: 'muted', text: DASH })),
          el('td', { class: 'num' }, fmt(i.ejections), check && rep ? el('span', { class: 'sub', text: 'check ' + check }) : null),
          el('td', {}, f.state ? el('span', { text: String(f.state) }) : el('span', { class: 'muted', text: DASH }),
            f.state ? el('span', { class: 'sub', text: (isNum(f.pid) && f.pid ? 'pid ' + f.pid + ' · ' : '') + 'restarts ' + fmt(f.restarts) }) : null),
        ];
        const action = tr.querySelector('td.action');
        for (const c of [...tr.cells]) if (c !== action) c.remove();
        action.before(...cells);
      }
      prev = place(tbody, tr, prev);
    }
    for (const row of [...tbody.rows]) if (!keep.has(row.id)) row.remove();
  }

  // ---- events ------------------------------------------------------------

  // eventTone colours an event by its kind: good news, bad news, or an
  // operator's or the system's deliberate action.
  function eventTone(kind) {
    const k = String(kind || '');
    if (/unfrozen|ready|recovered|restored|undrained|started|_up$|_off$|_ok$/.test(k)) return 'good';
    if (/crash|eject|frozen|fail|unhealthy|down|hang|error|panic|budget|shedding_on/.test(k)) return 'bad';
    if (/shed|drain|replac|stop|overload|restart|recover|slow/.test(k)) return 'warn';
    return '';
  }

  let lastEventsSig = '';
  function renderEvents(st) {
    const evs = Array.isArray(st.events) ? st.events.slice(-50).reverse() : [];
    const sig = JSON.stringify(evs);
    $('events-empty').hidden = evs.length > 0;
    if (sig === lastEventsSig) return;
    lastEventsSig = sig;
    $('events').replaceChildren(...evs.map((ev) => {
      const t = parseTime(ev.time);
      return el('li', { 'data-kind': ev.kind || '' },
        el('time', { datetime: ev.time || '', text: clock(t) }),
        el('span', {}, el('span', { class: 'badge ' + eventTone(ev.kind), text: ev.kind || 'event' })),
        el('span', { text: ev.message || '' }));
    }));
  }

  // ---- wiring ------------------------------------------------------------

  function wire() {
    $('btn-break').addEventListener('click', (ev) => busy(ev.currentTarget, () => send('POST', '/api/backend', { mode: 'hang' }, 'Break backend')));
    $('btn-restore').addEventListener('click', (ev) => busy(ev.currentTarget, () => send('POST', '/api/backend', { mode: 'up' }, 'Restore backend')));
    $('btn-restart').addEventListener('click', (ev) => busy(ev.currentTarget, () => send('POST', '/api/restart', {}, 'Rolling restart')));
    $('btn-load-stop').addEventListener('click', (ev) => busy(ev.currentTarget, () => send('DELETE', '/api/load', {}, 'Stop load')));
    $('btn-load-start').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
      const rps = Number($('load-rps').value), secs = Number($('load-seconds').value);
      const lim = (lastState && lastState.limits) || { max_rps: 2000, max_seconds: 600 };
      if (!(rps > 0 && rps <= lim.max_rps)) { toast('Load: req/s must be between 1 and ' + lim.max_rps + '.', 'error'); return; }
      if (!(Number.isInteger(secs) && secs >= 1 && secs <= lim.max_seconds)) { toast('Load: seconds must be a whole number from 1 to ' + lim.max_seconds + '.', 'error'); return; }
      await send('POST', '/api/load', { rps, seconds: secs }, 'Start load at ' + rps + ' req/s');
    }));
  }

  initToken();
  wire();
  poll();
})();
