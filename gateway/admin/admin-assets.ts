import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DASHBOARD_SCRIPT, DASHBOARD_STYLE } from './dashboard-script.js';

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

/**
 * The dashboard's static files, served by the gateway itself: no CDN, so the
 * page works offline and the CSP can stay `'self'`. Chart.js comes from the
 * installed npm package (pinned in package.json), read once at start.
 */
export function loadAdminAssets(): ReadonlyMap<string, Asset> {
  const chartDir = path.dirname(createRequire(import.meta.url).resolve('chart.js'));
  const js = 'text/javascript; charset=utf-8';
  return new Map<string, Asset>([
    ['/admin/assets/chart.umd.min.js', { type: js, body: readFileSync(path.join(chartDir, 'chart.umd.min.js')) }],
    ['/admin/assets/dashboard.js', { type: js, body: Buffer.from(DASHBOARD_SCRIPT) }],
    ['/admin/assets/dashboard.css', { type: 'text/css; charset=utf-8', body: Buffer.from(DASHBOARD_STYLE) }],
  ]);
}
