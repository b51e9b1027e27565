/**
 * The dashboard's browser script, served as /admin/assets/dashboard.js. It is
 * kept as text here so the build (tsc into dist/) ships it with no copy step.
 * Every value from the audit log (customer, model, reason, a control event's
 * actor…) is attacker-influenced, so it only ever reaches the page through textContent.
 * In fleet mode (the page has the gateway select) it adds the gateway parts;
 * `?gateway=ID` in the page's address narrows every figure to that gateway.
 */
export const DASHBOARD_SCRIPT = String.raw`'use strict';
(function () {
  var ALLOWED = '#2e7d32';
  var BLOCKED = '#c62828';
  var fleetSelect = document.getElementById('gateway');
  var gatewayFilter = new URLSearchParams(window.location.search).get('gateway') || '';
  var scope = fleetSelect && gatewayFilter ? '?gateway=' + encodeURIComponent(gatewayFilter) : '';

  function getJson(path) {
    return fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } }).then(function (res) {
      if (res.status === 401) { window.location.assign('/admin'); throw new Error('signed out'); }
      if (!res.ok) throw new Error(path + ' answered ' + res.status);
      return res.json();
    });
  }

  function cell(row, value, numeric) {
    var td = document.createElement('td');
    td.textContent = value === null || value === undefined ? '' : String(value);
    if (numeric) td.className = 'num';
    row.appendChild(td);
    return td;
  }

  function fillTable(id, rows, columns) {
    var body = document.querySelector('#' + id + ' tbody');
    body.replaceChildren();
    rows.forEach(function (r) {
      var tr = document.createElement('tr');
      columns.forEach(function (c) { cell(tr, c.value(r), c.numeric); });
      body.appendChild(tr);
    });
  }

  function stacked(canvasId, labels, allowed, blocked) {
    return new Chart(document.getElementById(canvasId), {
      type: 'bar',
      data: {
        labels: labels,
        datasets: [
          { label: 'allowed', data: allowed, backgroundColor: ALLOWED, stack: 'decisions' },
          { label: 'blocked', data: blocked, backgroundColor: BLOCKED, stack: 'decisions' }
        ]
      },
      options: { animation: false, maintainAspectRatio: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  function showSummary(s) {
    document.getElementById('generated').textContent = 'as of ' + s.generated_at;
    stacked('hourly-chart', s.hourly.map(function (h) { return h.hour.slice(11); }),
      s.hourly.map(function (h) { return h.allowed; }), s.hourly.map(function (h) { return h.blocked; }));
    stacked('daily-chart', s.daily.map(function (d) { return d.day.slice(5); }),
      s.daily.map(function (d) { return d.allowed; }), s.daily.map(function (d) { return d.blocked; }));
    new Chart(document.getElementById('risk-chart'), {
      type: 'bar',
      data: {
        labels: s.risk.map(function (b) { return b.from + '–' + b.to; }),
        datasets: [{ label: 'requests', data: s.risk.map(function (b) { return b.count; }), backgroundColor: '#1565c0' }]
      },
      options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    fillTable('blocking', s.blocking, [
      { value: function (r) { return r.cause; } },
      { value: function (r) { return r.count; }, numeric: true }
    ]);
    fillTable('customers', s.customers, [
      { value: function (r) { return r.customer; } },
      { value: function (r) { return r.model; } },
      { value: function (r) { return r.requests; }, numeric: true },
      { value: function (r) { return r.blocked; }, numeric: true },
      { value: function (r) { return r.avg_risk; }, numeric: true },
      { value: function (r) { return r.tokens; }, numeric: true }
    ]);
    var changeColumns = [
      { value: function (r) { return r.created_at; } },
      { value: function (r) { return r.kind; } },
      { value: function (r) { return r.actor; } },
      { value: function (r) { return r.summary; } }
    ];
    if (fleetSelect) changeColumns.push({ value: function (r) { return r.gateway; } });
    fillTable('changes', s.changes, changeColumns);
    return s;
  }

  // The select lists every gateway that has shipped; choosing one reloads the page narrowed to it.
  function showFleet(s, gateways) {
    gateways.forEach(function (g) {
      var option = document.createElement('option');
      option.value = g.gateway;
      option.textContent = g.gateway;
      if (g.gateway === gatewayFilter) option.selected = true;
      fleetSelect.appendChild(option);
    });
    fleetSelect.addEventListener('change', function () {
      window.location.assign('/admin' + (fleetSelect.value ? '?gateway=' + encodeURIComponent(fleetSelect.value) : ''));
    });
    var totals = {};
    s.gateways.forEach(function (t) { totals[t.gateway] = t; });
    var rows = gateways.filter(function (g) { return !gatewayFilter || g.gateway === gatewayFilter; }).map(function (g) {
      var t = totals[g.gateway] || { requests: 0, blocked: 0, tokens: null };
      return { gateway: g.gateway, requests: t.requests, blocked: t.blocked, tokens: t.tokens, shipped_at: g.shipped_at };
    });
    fillTable('gateways', rows, [
      { value: function (r) { return r.gateway; } },
      { value: function (r) { return r.requests; }, numeric: true },
      { value: function (r) { return r.blocked; }, numeric: true },
      { value: function (r) { return r.tokens; }, numeric: true },
      { value: function (r) { return r.shipped_at; } }
    ]);
  }

  function showDecisions(d) {
    var columns = [
      { value: function (r) { return r.created_at; } },
      { value: function (r) { return r.allowed ? 'allow' : 'block'; } },
      { value: function (r) { return r.customer_id; } },
      { value: function (r) { return r.api_key_id; } },
      { value: function (r) { return r.model; } },
      { value: function (r) { return r.operation; } },
      { value: function (r) { return r.risk_score; }, numeric: true },
      { value: function (r) { return r.status; }, numeric: true },
      { value: function (r) { return r.total_tokens; }, numeric: true },
      { value: function (r) { return r.reason; } },
      { value: function (r) { return r.id; } }
    ];
    if (fleetSelect) columns.push({ value: function (r) { return r.gateway_id; } });
    fillTable('decisions', d.decisions, columns);
    document.querySelectorAll('#decisions tbody tr').forEach(function (tr, i) {
      tr.className = d.decisions[i].allowed ? 'allow' : 'block';
    });
  }

  function showPolicy(p) {
    var rejected = p.last_rejected
      ? p.last_rejected.at + ' — ' + p.last_rejected.message
      : 'none since start';
    var values = { hash: p.hash, file: p.file, mode: p.mode, block_threshold: p.block_threshold, rules: p.rules, loaded_at: p.loaded_at, last_rejected: rejected };
    Object.keys(values).forEach(function (k) {
      document.querySelector('#policy [data-field="' + k + '"]').textContent = String(values[k]);
    });
  }

  function failed(err) {
    var p = document.createElement('p');
    p.className = 'error';
    p.textContent = 'Could not load the dashboard: ' + err.message;
    document.querySelector('main').prepend(p);
  }

  var summary = getJson('/admin/api/summary' + scope).then(showSummary);
  var loads = [summary, getJson('/admin/api/decisions' + scope).then(showDecisions), getJson('/admin/api/policy').then(showPolicy)];
  if (fleetSelect) {
    loads.push(Promise.all([summary, getJson('/admin/api/gateways')]).then(function (r) { showFleet(r[0], r[1].gateways); }));
  }
  Promise.all(loads).then(function () { document.body.dataset.loaded = 'true'; }, failed);
})();
`;

export const DASHBOARD_STYLE = `
:root { font-family: system-ui, sans-serif; color: #1b1b1b; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #263238; color: #fff; }
header h1 { font-size: 1.2rem; margin: 0; }
header form { margin-left: auto; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; padding: 1rem; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: .8rem 1rem; min-width: 0; overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
.chart { position: relative; height: 240px; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eceff1; vertical-align: top; }
td { max-width: 32rem; overflow-wrap: anywhere; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.block td:nth-child(2) { color: #c62828; font-weight: 600; }
tr.allow td:nth-child(2) { color: #2e7d32; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
.error { color: #c62828; }
body.login main { display: block; max-width: 24rem; margin: 10vh auto; }
body.login form { display: grid; gap: .6rem; }
body.login input, body.login button { font-size: 1rem; padding: .4rem; }
`;
