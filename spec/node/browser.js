// What chat_browser.js and sse_browser.js share: playwright-core driving
// Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) headless, the bound
// on every wait, and how a run reports.
//
//   const browser = require("./browser");
//   browser.run(() => browser.withContext(async (context) => { ...;
//     return "ok: what was checked"; }));
//
// run(main) prints main's summary and exits 0; it prints "FAIL: ..." and
// exits 1 when main throws, when a watched page reported an error, or when
// the whole run takes more than 8 times the bound.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

// Every wait: RINGLET_TEST_TIMEOUT seconds (default 10).
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);
const EXECUTABLE = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
  "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic"];

const problems = []; // console errors and page errors, shown on failure

// Bounds page's waits and collects its console errors and page errors
// (each named after `name`).
function watch(page, name) {
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${name} console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`${name} error: ${err}`));
  return page;
}

// Runs fn(context) in a fresh persistent browser context (its profile in a
// temporary directory), closed and removed afterwards. The context opens
// with one blank tab: context.pages()[0].
async function withContext(fn) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ringlet-chrome-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: EXECUTABLE,
      headless: true,
      args: ARGS,
      timeout: TIMEOUT,
    });
    return await fn(context);
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

function run(main) {
  const watchdog = setTimeout(() => {
    console.log("FAIL: the whole run took longer than its bound");
    process.exit(1);
  }, 8 * TIMEOUT);
  main().then((summary) => {
    clearTimeout(watchdog);
    if (problems.length > 0) {
      console.log("FAIL: the page reported errors:\n" + problems.join("\n"));
      process.exit(1);
    }
    console.log(summary);
  }, (err) => {
    clearTimeout(watchdog);
    console.log("FAIL: " + (err && err.message ? err.message : err));
    if (problems.length > 0) console.log(problems.join("\n"));
    process.exit(1);
  });
}

module.exports = { TIMEOUT, watch, withContext, run };
