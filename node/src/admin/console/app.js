// Sluice admin console. Plain JavaScript, no dependencies, no inline handlers
// (the page's CSP allows only this same-origin script).
//
// The admin token is typed into the login form, kept in this tab's
// sessionStorage and sent only as `Authorization: Bearer` to this origin.
// Every 2 s the page reads GET /admin/cluster, /admin/config and /admin/metrics;
// requests/s and p99 per route are computed from the difference between two
// successive metrics scrapes (counter deltas; histogram bucket deltas).
'use strict';

(function () {
  const TOKEN_KEY = 'sluice.adminToken';
  const REFRESH_MS = 2000;
  const HISTORY = 60; // samples kept per route: 2 minutes at 2 s
  const BREAKER = { 0: ['closed', 'ok'], 1: ['open', 'bad'], 2: ['half-open', 'warn'] };

  let token = null;
  let timer = null;
  let generation = 0; // bumped on logout so a late answer is dropped
  let previous = null; // the last metrics scrape: { t, requests, buckets }
  const history = new Map(); // route -> [{ rps, p99 }]

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ admin API --

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One admin API call with the bearer token; JSON unless `text` is set. Writes
  // (replay, delete a key) use the same helper with `method` and `body`.
  async function api(path, { method = 'GET', body, text = false, withToken = token } = {}) {
    const headers = { Authorization: 'Bearer ' + withToken };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      throw new ApiError(0, 'node unreachable: ' + e.message);
    }
    if (!res.ok) {
      let message = res.status + ' ' + res.statusText;
      try {
        const err = await res.json();
        if (err && err.message) message = res.status + ': ' + err.message;
      } catch (_) { /* not JSON */ }
      throw new ApiError(res.status, message);
    }
    return text ? res.text() : res.json();
  }

  // ------------------------------------------------------- login/logout --

  async function login(event) {
    event.preventDefault();
    const candidate = $('token').value.trim();
    const error = $('login-error');
    error.hidden = true;
    if (!candidate) return;
    $('login-button').disabled = true;
    try {
      await api('/admin/cluster', { withToken: candidate });
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $('token').value = '';
      start(candidate);
    } catch (e) {
      error.textContent = e.status === 401
        ? 'Wrong admin token: this node did not accept it (401).'
        : 'Login failed: ' + e.message;
      error.hidden = false;
    } finally {
      $('login-button').disabled = false;
    }
  }

  function start(t) {
    token = t;
    generation += 1;
    previous = null;
    history.clear();
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('session').hidden = false;
    refresh(generation);
  }

  function logout(message) {
    generation += 1;
    token = null;
    previous = null;
    history.clear();
    if (timer) clearTimeout(timer);
    timer = null;
    sessionStorage.removeItem(TOKEN_KEY);
    for (const id of ['members', 'routes', 'services']) clear($(id).tBodies[0]);
    $('dashboard').hidden = true;
    $('session').hidden = true;
    $('login').hidden = false;
    const error = $('login-error');
    error.textContent = typeof message === 'string' ? message : '';
    error.hidden = typeof message !== 'string';
    $('token').focus();
  }

  // ------------------------------------------------------------ refresh --

  async function refresh(gen) {
    try {
      const [cluster, config, metricsText] = await Promise.all([
        api('/admin/cluster'),
        api('/admin/config'),
        api('/admin/metrics', { text: true }),
      ]);
      if (gen !== generation) return;
      const samples = parseMetrics(metricsText);
      const rates = computeRates(samples);
      renderCluster(cluster);
      renderRoutes(config, rates);
      renderServices(config, samples);
      $('error').hidden = true;
      $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      if (gen !== generation) return;
      if (e.status === 401) {
        logout('The admin token is no longer accepted (401); log in again.');
        return;
      }
      $('error').textContent = 'Refresh failed: ' + e.message;
      $('error').hidden = false;
    }
    if (gen === generation) timer = setTimeout(() => refresh(gen), REFRESH_MS);
  }

  // ----------------------------------------------------------- metrics --

  // Prometheus text format → [{ name, labels, value }].
  function parseMetrics(text) {
    const out = [];
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const raw of text.split('\n')) {
      if (!raw || raw[0] === '#') continue;
      const m = line.exec(raw);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        for (const l of m[2].matchAll(label)) {
          labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        }
      }
      out.push({ name: m[1], labels, value: parseFloat(m[3]) });
    }
    return out;
  }

  // Requests/s and p99 per route since the previous scrape, appended to `history`.
  function computeRates(samples) {
    const now = performance.now();
    const requests = new Map(); // route -> total count
    const buckets = new Map(); // route -> Map(le -> cumulative count)
    for (const s of samples) {
      if (s.name === 'gateway_requests_total') {
        const r = s.labels.route;
        requests.set(r, (requests.get(r) || 0) + s.value);
      } else if (s.name === 'gateway_request_duration_seconds_bucket') {
        const r = s.labels.route;
        if (!buckets.has(r)) buckets.set(r, new Map());
        const le = s.labels.le === '+Inf' ? Infinity : parseFloat(s.labels.le);
        buckets.get(r).set(le, s.value);
      }
    }
    const rates = new Map();
    if (previous) {
      const dt = (now - previous.t) / 1000;
      for (const [route, count] of requests) {
        const delta = count - (previous.requests.get(route) || 0);
        const rps = dt > 0 && delta > 0 ? delta / dt : 0; // < 0: the node restarted
        const p99 = quantile(0.99, buckets.get(route), previous.buckets.get(route));
        rates.set(route, { rps, p99 });
        const h = history.get(route) || [];
        h.push({ rps, p99 });
        while (h.length > HISTORY) h.shift();
        history.set(route, h);
      }
    }
    previous = { t: now, requests, buckets };
    return rates;
  }

  // The q-quantile of the observations between two cumulative bucket sets,
  // interpolated within the bucket as Prometheus's histogram_quantile does.
  // null when nothing was observed in between.
  function quantile(q, cur, prev) {
    if (!cur) return null;
    const les = [...cur.keys()].sort((a, b) => a - b);
    const delta = (le) => Math.max(0, cur.get(le) - ((prev && prev.get(le)) || 0));
    const total = delta(Infinity);
    if (!(total > 0)) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const le of les) {
      const count = delta(le);
      if (count >= rank) {
        if (le === Infinity) return lower; // above the highest finite bound
        const inBucket = count - below;
        return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
      }
      lower = le;
      below = count;
    }
    return lower;
  }

  // ------------------------------------------------------------ render --

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function badge(text, kind) {
    return el('span', { class: 'badge ' + (kind || '') }, text);
  }

  function renderCluster(c) {
    $('node-id').textContent = String(c.node_id);
    $('node-state').textContent = c.state;
    $('leader').textContent = c.leader_id == null ? 'none (election?)' : 'node ' + c.leader_id;
    $('term').textContent = String(c.term);
    $('applied').textContent = String(c.applied_index);
    $('quorum').textContent = c.millis_since_quorum_ack == null
      ? '–' : c.millis_since_quorum_ack + ' ms ago';
    const body = $('members').tBodies[0];
    clear(body);
    const nodes = (c.nodes || []).slice().sort((a, b) => a.id - b.id);
    for (const n of nodes) {
      const role = el('td', {});
      if (n.leader) role.append(badge('leader', 'leader'));
      role.append(badge(n.voter ? 'voter' : 'learner'));
      if (n.id === c.node_id) role.append(badge('this node'));
      body.append(el('tr', { class: 'member' + (n.leader ? ' is-leader' : ''), 'data-id': n.id },
        el('td', {}, 'node ' + n.id),
        el('td', {}, el('code', {}, n.addr)),
        role,
        el('td', { class: 'num' }, n.matched_index == null ? '–' : n.matched_index),
        el('td', {}, memberHealth(c, n))));
    }
  }

  // What this node can tell about a member: the leader knows how far each one's
  // log matches its own; a follower knows only itself and whom it follows.
  function memberHealth(c, n) {
    if (n.id === c.node_id) {
      return c.leader_id == null ? badge('no leader', 'bad') : badge('up (this node)', 'ok');
    }
    if (n.matched_index != null) {
      const lag = (c.last_log_index || 0) - n.matched_index;
      if (lag <= 0) return badge('in sync', 'ok');
      return badge('behind by ' + lag, lag > 100 ? 'bad' : 'warn');
    }
    if (n.id === c.leader_id) return badge('leading', 'ok');
    return badge('lag known on the leader', '');
  }

  function routesOf(config) {
    const routes = Array.isArray(config.routes) ? config.routes : [];
    return routes.map((r) => ({
      id: r.id || r.path,
      path: r.path,
      methods: Array.isArray(r.methods) && r.methods.length ? r.methods.join(', ') : 'any',
      service: r.service,
      auth: r.auth || 'any',
    }));
  }

  function formatRps(v) {
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function formatSeconds(s) {
    if (s == null) return '–';
    return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 2 : 0) + ' ms' : s.toFixed(2) + ' s';
  }

  // Metrics are labelled by the route's path template (never the raw path), so
  // routes sharing a path (split by method) share their numbers.
  function renderRoutes(config, rates) {
    const body = $('routes').tBodies[0];
    clear(body);
    for (const r of routesOf(config)) {
      const rate = rates.get(r.path);
      body.append(el('tr', { 'data-route': r.id, 'data-path': r.path },
        el('td', {}, el('code', {}, r.id)),
        el('td', {}, el('code', {}, r.path)),
        el('td', {}, r.methods),
        el('td', {}, r.service),
        el('td', {}, r.auth),
        el('td', { class: 'num rps' }, rate ? formatRps(rate.rps) : '0.00'),
        el('td', { class: 'num p99' }, rate ? formatSeconds(rate.p99) : '–'),
        el('td', {}, chart(history.get(r.path) || []))));
    }
  }

  // A sparkline: requests/s (solid) and p99 (dashed), each scaled to its own max.
  function chart(points) {
    const W = 160, H = 32, NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const axis = document.createElementNS(NS, 'line');
    axis.setAttribute('class', 'axis');
    for (const [k, v] of [['x1', 0], ['y1', H - 0.5], ['x2', W], ['y2', H - 0.5]]) axis.setAttribute(k, v);
    svg.append(axis);
    const line = (values, cls) => {
      const max = Math.max(...values.map((v) => v || 0));
      if (!(max > 0)) return;
      // Fills the width as samples arrive (at least 10 slots), then scrolls.
      const slots = Math.min(HISTORY, Math.max(values.length, 10));
      const step = W / (slots - 1);
      const x0 = W - (values.length - 1) * step;
      const pts = values.map((v, i) =>
        (x0 + i * step).toFixed(1) + ',' + (H - 2 - ((v || 0) / max) * (H - 4)).toFixed(1));
      const p = document.createElementNS(NS, 'polyline');
      p.setAttribute('class', cls);
      p.setAttribute('points', pts.join(' '));
      svg.append(p);
    };
    line(points.map((p) => p.rps), 'rps');
    line(points.map((p) => p.p99), 'p99');
    const title = document.createElementNS(NS, 'title');
    const last = points[points.length - 1];
    title.textContent = last
      ? `req/s ${formatRps(last.rps)} (solid), p99 ${formatSeconds(last.p99)} (dashed)` : 'no data yet';
    svg.append(title);
    return svg;
  }

  function renderServices(config, samples) {
    const breaker = new Map();
    const targets = new Map(); // service -> [[target, healthy]]
    for (const s of samples) {
      if (s.name === 'gateway_circuit_breaker_state') breaker.set(s.labels.service, s.value);
      if (s.name === 'gateway_upstream_health') {
        const list = targets.get(s.labels.service) || [];
        list.push([s.labels.target, s.value === 1]);
        targets.set(s.labels.service, list);
      }
    }
    const services = config.services || {};
    const names = Array.isArray(services) ? services.map((s) => s.name) : Object.keys(services);
    const body = $('services').tBodies[0];
    clear(body);
    for (const name of names.sort()) {
      const spec = Array.isArray(services) ? services.find((s) => s.name === name) : services[name];
      const state = BREAKER[breaker.get(name)];
      const cell = el('td', {});
      const health = targets.get(name);
      if (health && health.length) {
        for (const [t, ok] of health) cell.append(badge((ok ? '✓ ' : '✗ ') + t, ok ? 'ok' : 'bad'));
      } else {
        for (const t of (spec && spec.upstreams) || []) cell.append(badge(t));
      }
      body.append(el('tr', { 'data-service': name },
        el('td', {}, name),
        el('td', { class: 'breaker' }, state ? badge(state[0], state[1]) : badge('no data')),
        cell));
    }
  }

  // -------------------------------------------------------------- boot --

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', () => logout());
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) start(saved);
    else $('token').focus();
  });
})();
