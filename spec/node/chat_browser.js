#!/usr/bin/env node
// The chat example in a real browser: playwright-core drives Debian's
// Chromium (/usr/bin/chromium, or $CHROMIUM) headless (spec/node/browser.js).
//
//   node spec/node/chat_browser.js http://127.0.0.1:PORT/
//
// Tab 1 joins as "alice" and says something; tab 2 joins as "bob" and must
// get it as history; alice sees "bob joined" and both count 2 members; bob
// answers, alice sees it under bob's name; bob's tab closes and alice sees
// "bob left" and 1 member. Messages hold HTML markup, which must show as
// text, never as elements.
// Exits 0 on success; otherwise prints what failed and exits 1. Every wait
// is bounded by RINGLET_TEST_TIMEOUT seconds (default 10).
"use strict";

const { TIMEOUT, watch, withContext, run } = require("./browser");

const url = process.argv[2];

if (!url) {
  console.log("usage: chat_browser.js http://127.0.0.1:PORT/");
  process.exit(2);
}

async function openTab(page, name, who) {
  watch(page, name);
  const res = await page.goto(url, { timeout: TIMEOUT });
  if (!res || res.status() !== 200) {
    throw new Error(`${name}: GET ${url} answered ${res && res.status()}`);
  }
  await page.fill("#name", who);
  await page.click("#join");
  try {
    await page.waitForFunction(() =>
      document.getElementById("status").textContent === "connected",
    null, { timeout: TIMEOUT });
  } catch (err) {
    const status = await page.textContent("#status").catch(() => "?");
    throw new Error(`${name}: never connected (status "${status}")`);
  }
  return page;
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

// Waits until the page's list holds a message from `from` whose text is
// exactly `text` (from null: a notice with that text).
async function expectItem(page, name, from, text) {
  try {
    await page.waitForFunction(([from, want]) =>
      Array.from(document.querySelectorAll("#messages li")).some((li) =>
        from === null
          ? li.classList.contains("notice") && li.textContent === want
          : li.classList.contains("message") &&
            li.querySelector(".name").textContent === from &&
            li.querySelector(".text").textContent === want),
    [from, text], { timeout: TIMEOUT });
  } catch (err) {
    const items = await page.$$eval("#messages li",
      (lis) => lis.map((li) => li.textContent)).catch(() => []);
    throw new Error(`${name} did not show ${JSON.stringify(text)}` +
      (from ? ` from ${from}` : "") + `; it shows: ${JSON.stringify(items)}`);
  }
}

async function expectCount(page, name, n) {
  try {
    await page.waitForFunction((n) =>
      document.getElementById("count").textContent === String(n),
    n, { timeout: TIMEOUT });
  } catch (err) {
    const c = await page.textContent("#count").catch(() => "?");
    throw new Error(`${name} counts ${c} members, expected ${n}`);
  }
}

run(() => withContext(async (context) => {
  // The persistent context opens with one blank tab: it is the first.
  const first = context.pages()[0] || await context.newPage();
  const alice = await openTab(first, "tab 1", "alice");
  await expectCount(alice, "tab 1", 1);
  const tag = Math.random().toString(36).slice(2);
  const hello = `hello <b>bold</b> & <img src=x onerror=alert(1)> ${tag}`;
  await say(alice, hello);
  await expectItem(alice, "tab 1 (the sender)", "alice", hello);

  // bob comes in: the history, the notice, the count
  const bob = await openTab(await context.newPage(), "tab 2", "bob");
  await expectItem(bob, "tab 2 (history)", "alice", hello);
  await expectItem(alice, "tab 1", null, "bob joined");
  await expectCount(alice, "tab 1", 2);
  await expectCount(bob, "tab 2", 2);

  const reply = `reply é 😀 ${tag}`;
  await say(bob, reply);
  await expectItem(alice, "tab 1", "bob", reply);
  await expectItem(bob, "tab 2 (the sender)", "bob", reply);

  for (const [name, page] of [["tab 1", alice], ["tab 2", bob]]) {
    const elements = await page.$$eval("#messages .text *", (els) => els.length);
    if (elements !== 0) {
      throw new Error(`${name}: a message was rendered as HTML ` +
        `(${elements} element(s) inside a message's text)`);
    }
    const count = await page.$$eval("#messages li.message", (lis) => lis.length);
    if (count !== 2) {
      throw new Error(`${name} shows ${count} messages, expected 2`);
    }
  }

  // bob leaves
  await bob.close();
  await expectItem(alice, "tab 1", null, "bob left");
  await expectCount(alice, "tab 1", 1);
  return "ok: names, history, join and leave, counts, messages as text";
}));
