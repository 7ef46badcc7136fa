#!/usr/bin/env node
// Prints soak/driver.js's report (driver.json) in a few readable lines.
//   node soak/summary.js DIR/driver.json
'use strict';
const r = require(require('path').resolve(process.argv[2]));
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
const list = (o) => Object.entries(o || {}).sort((a, b) => b[1] - a[1])
  .map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
console.log(`clients: ${r.clients} (${list(r.mix)})`);
console.log(`checks passed: ${sum(r.checks)} — ${list(r.checks)}`);
console.log(`FAILED checks: ${sum(r.failures)}${sum(r.failures) ? ' — ' + list(r.failures) : ''}`);
for (const f of (r.failure_samples || []).slice(0, 15)) {
  console.log(`  at ${f.t.toFixed(1)} s ${f.kind}: ${f.detail.split('\n')[0]}`);
}
console.log(`chaos events: ${sum(r.chaos)} — ${list(r.chaos)}`);
console.log(`chaos outcomes: ${list(r.chaos_outcomes)}`);
if (r.mode === 'soak') {
  const c = r.channels;
  console.log(`clients finished ${r.clients_done ? 'all' : 'NOT ALL'} within ${r.drain_s.toFixed(1)} s of the end`);
  console.log(`channels: made ${c.made}, on_open ${c.opened}, on_close ${c.closed}, still open ${c.live}` +
    ` (${list(c.live_by_kind)}), on_close without on_open ${c.close_unopened}, twice: open ${c.open_twice} close ${c.close_twice}; group members ${c.group_members}`);
  console.log(`requests seen by the app: ${r.requests_seen_by_app}; broadcasts ${r.broadcasts}, deliveries ${r.deliveries}; pushes refused (send buffer full) ${r.push_refused}`);
  console.log(`Lua heap: ${r.lua_kib_at_start && r.lua_kib_at_start.toFixed(0)} KiB at start, ${r.lua_kib_before_gc.toFixed(0)} KiB at the end, ${r.lua_kib_after_gc.toFixed(0)} KiB after collectgarbage`);
  console.log(`app on_error counts: ${list(r.server_errors)}`);
  const closes = Object.entries(r.by_kind).filter(([k]) => k.includes('.close.'));
  console.log(`WebSocket close codes seen by on_close (kind.class.close.code.initiator): ${closes.map(([k, v]) => `${k.replace('.close.', ' ')} ${v}`).join(', ')}`);
} else {
  console.log(`in flight at the stop: ${list(r.in_flight_at_stop)}`);
  for (const [k, o] of Object.entries(r.outcomes_of_those || {})) {
    console.log(`  ${k}: ${list(o)}${r.latest_completion_ms_after_stop[k] !== undefined ? ` (last completed ${r.latest_completion_ms_after_stop[k]} ms after the stop)` : ''}`);
  }
  console.log(`never ended: ${list(r.never_ended)}`);
  console.log(`WebSockets open at the stop: ${r.websockets_open_at_stop}; close codes they got: ${list(r.websocket_close_codes)} (the last ${r.latest_ws_close_ms_after_stop} ms after the stop)`);
  console.log(`errors after the stop (well-behaved clients): ${list(r.errors_after_stop)}`);
}
