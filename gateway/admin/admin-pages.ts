/**
 * The two HTML documents. They hold no data and no inline script or style, so
 * the strict Content-Security-Policy (`script-src 'self'`) can forbid both;
 * everything shown is fetched by dashboard.js and set with textContent.
 */
const HEAD = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="stylesheet" href="/admin/assets/dashboard.css">`;

export function loginPage(refused: boolean): string {
  return `${HEAD}
<title>govgate admin: sign in</title>
</head>
<body class="login">
<main>
<h1>govgate admin</h1>
${refused ? '<p class="error" id="login-error" role="alert">That token is not the admin token.</p>\n' : ''}<form method="post" action="/admin/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;
}

/**
 * The dashboard. In fleet mode it adds a gateway select (its options come
 * from /admin/api/gateways), a per-gateway panel and a gateway column on
 * decisions and changes; without it, the page is the single-gateway one,
 * unchanged. The gateway columns come last, so a row's decision stays its
 * second cell (the stylesheet colours it by position).
 */
export function dashboardPage(fleet: boolean): string {
  const when = (html: string) => (fleet ? html : '');
  return `${HEAD}
<title>govgate admin</title>
<script src="/admin/assets/chart.umd.min.js" defer></script>
<script src="/admin/assets/dashboard.js" defer></script>
</head>
<body>
<header>
<h1>govgate</h1>
<span id="generated"></span>
${when('<label for="gateway">gateway</label><select id="gateway"><option value="">all gateways</option></select>\n')}<form method="post" action="/admin/logout"><button type="submit">Sign out</button></form>
</header>
<main>
<section class="wide"><h2>Allowed and blocked per hour, last 24 hours (UTC)</h2><div class="chart"><canvas id="hourly-chart"></canvas></div></section>
<section class="wide"><h2>Allowed and blocked per day, last 30 days (UTC)</h2><div class="chart"><canvas id="daily-chart"></canvas></div></section>
<section><h2>Risk score distribution, last 24 hours</h2><div class="chart"><canvas id="risk-chart"></canvas></div></section>
<section><h2>Top blocking causes, last 24 hours</h2>
<table id="blocking"><thead><tr><th>cause</th><th class="num">blocked</th></tr></thead><tbody></tbody></table></section>
<section class="wide"><h2>Policy in force</h2>
<dl id="policy">
<dt>SHA-256</dt><dd data-field="hash"></dd>
<dt>file</dt><dd data-field="file"></dd>
<dt>mode</dt><dd data-field="mode"></dd>
<dt>block threshold</dt><dd data-field="block_threshold"></dd>
<dt>rules</dt><dd data-field="rules"></dd>
<dt>loaded at (UTC)</dt><dd data-field="loaded_at"></dd>
<dt>last rejected edit</dt><dd data-field="last_rejected"></dd>
</dl></section>
<section class="wide"><h2>Changes: the latest 20 control events</h2>
<table id="changes"><thead><tr><th>time (UTC)</th><th>event</th><th>actor</th><th>detail</th>${when('<th>gateway</th>')}</tr></thead><tbody></tbody></table></section>
${when(`<section class="wide"><h2>Gateways, last 24 hours (shipped rows)</h2>
<table id="gateways"><thead><tr><th>gateway</th><th class="num">requests</th><th class="num">blocked</th><th class="num">tokens</th><th>last shipped (UTC)</th></tr></thead><tbody></tbody></table></section>
`)}<section class="wide"><h2>Customers and models, last 24 hours</h2>
<table id="customers"><thead><tr><th>customer</th><th>model</th><th class="num">requests</th><th class="num">blocked</th><th class="num">avg risk</th><th class="num">tokens</th></tr></thead><tbody></tbody></table></section>
<section class="wide"><h2>Latest 100 decisions</h2>
<table id="decisions"><thead><tr><th>time (UTC)</th><th>decision</th><th>customer</th><th>key</th><th>model</th><th>operation</th><th class="num">risk</th><th class="num">status</th><th class="num">tokens</th><th>reason</th><th>log id</th>${when('<th>gateway</th>')}</tr></thead><tbody></tbody></table></section>
</main>
</body>
</html>
`;
}
