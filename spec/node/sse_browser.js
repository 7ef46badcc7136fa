#!/usr/bin/env node
// examples/sse_clock.lua in a real browser: playwright-core drives Debian's
// Chromium (/usr/bin/chromium, or $CHROMIUM) headless (spec/node/browser.js).
//
//   node spec/node/sse_browser.js 'http://127.0.0.1:PORT/?interval=200&limit=4' 4
//
// The second argument is the page's `limit` (ticks per stream). The page's
// EventSource must show the server's clock (HH:MM:SS) and see it change;
// after `limit` ticks the server ends the stream, the browser reconnects
// (Last-Event-ID) and the ticks go on with the next id. The page's log must
// read: connected, ticks 1..limit, connected again, ticks limit+1, ... —
// every id once, none missing. A third open is allowed (it is the same
// story again), never an id out of order.
// Exits 0 on success; otherwise prints what failed and exits 1. Every wait
// is bounded by RINGLET_TEST_TIMEOUT seconds (default 10).
"use strict";

const { TIMEOUT, watch, withContext, run } = require("./browser");

const url = process.argv[2];
const limit = Number(process.argv[3]);

if (!url || !(limit > 0)) {
  console.log("usage: sse_browser.js 'http://127.0.0.1:PORT/?limit=N...' N");
  process.exit(2);
}

// The page's log, oldest first: {cls: "open" | "tick", id, text}.
function readLog(page) {
  return page.$$eval("#log li", (lis) => lis.map((li) => ({
    cls: li.className, id: li.dataset.id, text: li.textContent,
  })).reverse());
}

async function waitFor(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: TIMEOUT });
  } catch (err) {
    const log = await readLog(page).catch(() => []);
    const clock = await page.textContent("#clock").catch(() => "?");
    throw new Error(`${what}; the clock shows "${clock}", the log: ` +
      JSON.stringify(log.map((e) => e.text)));
  }
}

run(() => withContext(async (context) => {
  const page = context.pages()[0] || await context.newPage();
  watch(page, "the page");
  const res = await page.goto(url, { timeout: TIMEOUT });
  if (!res || res.status() !== 200) {
    throw new Error(`GET ${url} answered ${res && res.status()}`);
  }

  // the clock shows the server's time, then another time: it ticks
  await waitFor(page, "the clock never showed a time", () =>
    /^\d\d:\d\d:\d\d$/.test(document.getElementById("clock").textContent));
  const first = await page.textContent("#clock");
  await waitFor(page, `the clock stayed at ${first}`, (first) => {
    const now = document.getElementById("clock").textContent;
    return /^\d\d:\d\d:\d\d$/.test(now) && now !== first;
  }, first);

  // the stream ends after `limit` ticks; the browser comes back and the
  // ticks go on: wait for two ticks of the second stream
  await waitFor(page, "no reconnect with two more ticks after it",
    (want) => document.querySelectorAll("#log li.tick").length >= want &&
      document.querySelectorAll("#log li.open").length >= 2,
    limit + 2);

  const log = await readLog(page);
  const texts = JSON.stringify(log.map((e) => e.text));
  // connected, 1..limit, connected again, limit+1, ...
  let next = 1;
  let opens = 0;
  for (const [i, e] of log.entries()) {
    if (e.cls === "open") {
      opens += 1;
      if (i !== 0 && next !== (opens - 1) * limit + 1) {
        throw new Error(`a reconnect after id ${next - 1}, not after ` +
          `${(opens - 1) * limit} ticks: ${texts}`);
      }
    } else if (e.cls === "tick") {
      if (i === 0) throw new Error(`a tick before the stream opened: ${texts}`);
      if (e.id !== String(next)) {
        throw new Error(`id ${e.id} where ${next} was due ` +
          `(repeated or lost): ${texts}`);
      }
      if (!/^#\d+ \d\d:\d\d:\d\d$/.test(e.text)) {
        throw new Error(`a tick shows ${JSON.stringify(e.text)}`);
      }
      next += 1;
    } else {
      throw new Error(`an unexpected log item: ${texts}`);
    }
  }
  if (opens < 2) throw new Error(`connected ${opens} times: ${texts}`);
  return `ok: the clock ticks; ${opens} streams, ids 1..${next - 1} ` +
    "in order, each once";
}));
