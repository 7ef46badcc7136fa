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
const d = r.driver_loop_delay_ms;
if (d) console.log(`the driver's own event-loop delay (its lateness, not the server's): p50 ${d.p50} ms, p99 ${d.p99} ms, max ${d.max} ms`);
if (r.slowest_after_resume_s) console.log(`paused readers, the longest to get the rest after the resume: ${Object.entries(r.slowest_after_resume_s).map(([k, v]) => `${k.replace(' s after the resume', '')} ${v.toFixed(1)} s`).join(', ')}`);
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
  const late = Math.max(0, ...Object.values(r.latest_completion_ms_after_stop || {}));
  console.log(`the latest completion: ${late} ms after the stop`);
  console.log(`verdict on the operations in flight: ${list(r.stop_verdict)}`);
  const v = r.stop_verdict || {};
  console.log(`CUT SHORT though they had time to finish: ${v['CUT SHORT with time to finish'] || 0}; ` +
    `streams and polls running late, still in progress at the timeout: ${v['running late: still in progress at the timeout'] || 0}`);
  // those that did not complete, one by one (times in seconds); the class
  // the server's stop once gave streams and polls is kept for old reports
  const byDesign = /^HTTP stream or poll/;
  const groups = {};
  const s1 = (ms) => (ms / 1000).toFixed(1);
  for (const o of r.not_completed || []) {
    const k = byDesign.test(o.class) ? `${o.class}: ${o.kind.replace(/ due in .*/, '')} ${o.outcome}` :
      `${o.class}: ${o.kind} ${o.outcome}` +
      (o.due_ms_after !== undefined ? `, due ${s1(o.due_ms_after)} s after the stop` : '') +
      (o.bytes !== undefined ? `, ${o.bytes} bytes` : '') +
      `, begun ${(o.begun_ms_before / 1000).toFixed(o.begun_ms_before < 1000 ? 2 : 1)} s before it, ended ${s1(o.ended_ms_after)} s after`;
    groups[k] = (groups[k] || 0) + 1;
  }
  for (const [k, n] of Object.entries(groups).sort()) console.log(`  ${n} × ${k}`);
  console.log(`WebSockets open at the stop: ${r.websockets_open_at_stop}; close codes they got: ${list(r.websocket_close_codes)} (the last ${r.latest_ws_close_ms_after_stop} ms after the stop)`);
  console.log(`failed checks and errors of well-behaved clients after the stop: ${list(r.errors_after_stop)}`);
}
