#!/usr/bin/env node
// The CLI runs from the compiled build, which `npm install` (prepare) and `npm start` produce.
import('../dist/gateway/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/gateway/cli/main.js')) {
    process.stderr.write('govgate: not built yet; run "npm run build" in the checkout\n');
  } else {
    process.stderr.write(`govgate: ${err && err.message ? String(err.message).split('\n')[0] : String(err)}\n`);
  }
  process.exit(1);
});
