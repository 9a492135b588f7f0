// The demo page in headless Chromium (Debian's), driven by playwright-core: log in through the
// page, click the socket buttons, check what the page shows, and keep a screenshot.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, TIMEOUT_MS, startServer } from "./helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = resolve(here, "..", "artifacts");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const REQUIRED = process.env.SESSION_E2E_REQUIRED === "1";
/** `SESSION_IDLE_SECS` of the expiry tests' demo: a few seconds, so they wait seconds. */
const IDLE_SECS = 3;
const WINDOW_MS = IDLE_SECS * 1000;

// The flags this machine's closed network needs: without the background-networking ones
// Chromium keeps trying to reach Google and is refused.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// The package's `exports` hide `dist/`, so read it by path.
const CLIENT_BUNDLE = readFileSync(
  resolve(here, "..", "node_modules", "socket.io-client", "dist", "socket.io.min.js"),
);

const missing = !existsSync(CHROMIUM);
if (missing) {
  const message = `SKIPPED browser test: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
  if (REQUIRED) {
    test("Chromium is installed (SESSION_E2E_REQUIRED=1)", () => {
      assert.fail(message.replace("SKIPPED", "FAILED"));
    });
  } else {
    console.log(message);
    test("the demo page in Chromium", { skip: message }, () => {});
  }
} else {
  let server;
  // The same demo with a short inactivity window, for the expiry tests.
  let idleServer;
  let browser;
  let profile;

  before(async () => {
    server = await startServer();
    idleServer = await startServer({ SESSION_IDLE_SECS: String(IDLE_SECS) });
    const { chromium } = await import("playwright-core");
    // A fresh profile each run: nothing left over from an earlier one.
    profile = mkdtempSync(join(tmpdir(), "login-logout-chromium-"));
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1100, height: 600 },
      timeout: 60_000,
    });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await idleServer?.stop();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test("the demo page in Chromium", { timeout: 120_000 }, async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(err.message));

    const cdnRequests = await stayOnLoopback(page);

    try {
      await drive(page, cdnRequests);
    } catch (err) {
      await page.screenshot({ path: join(ARTIFACTS, "login_logout-failure.png"), fullPage: true });
      throw err;
    }
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  /**
   * Only loopback is reachable: the CDN's copy of the official client is served from the same
   * version in node_modules (its integrity hash must still match), everything else off this
   * machine is refused. Returns the list the CDN requests are recorded in.
   */
  async function stayOnLoopback(page) {
    const cdnRequests = [];
    await page.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === "cdn.socket.io" && url.pathname.endsWith("/socket.io.min.js")) {
        cdnRequests.push(url.href);
        return route.fulfill({
          status: 200,
          contentType: "application/javascript",
          headers: { "access-control-allow-origin": "*" },
          body: CLIENT_BUNDLE,
        });
      }
      if (url.hostname === "127.0.0.1") return route.continue();
      return route.abort();
    });
    return cdnRequests;
  }

  test("a page of another origin cannot open a socket with the user's cookie", { timeout: 60_000 }, async () => {
    // Another port of 127.0.0.1 is another origin but the same site: the browser sends the
    // session cookie along, so only the server's origin check stands in the way.
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    await stayOnLoopback(page);
    await page.goto(server.url + "/");
    await page.fill("#user", "mallory-target");
    await page.click("#http-login");
    await page.locator("#view-user").filter({ hasText: /^mallory-target$/ }).waitFor();

    const other = createServer((req, res) => {
      if (req.url === "/socket.io.min.js") {
        res.writeHead(200, { "content-type": "application/javascript" });
        return res.end(CLIENT_BUNDLE);
      }
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<!doctype html><script src="/socket.io.min.js"></script><script>
        window.outcomes = {};
        for (const transport of ["websocket", "polling"]) {
          const socket = io(${JSON.stringify(server.url)}, {
            transports: [transport], upgrade: false, forceNew: true,
            reconnection: false, withCredentials: true,
          });
          socket.on("connect", () => { window.outcomes[transport] = "connected"; });
          socket.on("connect_error", (err) => { window.outcomes[transport] = "refused: " + err.message; });
        }
      </script>`);
    });
    await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
    const otherUrl = `http://127.0.0.1:${other.address().port}/`;
    try {
      await page.goto(otherUrl);
      await page.waitForFunction(() => window.outcomes?.websocket && window.outcomes?.polling);
      const outcomes = await page.evaluate(() => window.outcomes);
      assert.match(outcomes.websocket, /^refused/, JSON.stringify(outcomes));
      assert.match(outcomes.polling, /^refused/, JSON.stringify(outcomes));
      const cookies = await browser.cookies(server.url);
      assert.ok(cookies.some((c) => c.name === "id"), "the browser holds the victim's cookie");
    } finally {
      await page.screenshot({ path: join(ARTIFACTS, "cross-origin.png"), fullPage: true });
      other.close();
      await page.close();
    }
  });

  test("\"log out other devices\" ends another browser's session, and its page shows it at once", { timeout: 90_000 }, async () => {
    const { chromium } = await import("playwright-core");
    // Another browser: its own profile, so its own cookie and session.
    const otherProfile = mkdtempSync(join(tmpdir(), "login-logout-chromium-other-"));
    const other = await chromium.launchPersistentContext(otherProfile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1100, height: 600 },
      timeout: 60_000,
    });
    const pages = [];
    try {
      await browser.clearCookies();
      const signIn = async (context) => {
        const signedIn = await signedInPage(context, server.url, "pat");
        pages.push(signedIn.page);
        return signedIn;
      };
      const laptop = await signIn(browser);
      const phone = await signIn(other);
      await laptop.page.click("#http-refresh");
      await laptop.page.locator("#view-devices").filter({ hasText: /^signed in on 2 devices$/ }).waitFor();

      await watchGone(phone.page);
      const clicked = Date.now();
      await laptop.page.click("#http-logout-others");
      await laptop.page.locator("#entries li").filter({ hasText: 'POST /logout/others → 200 {"ended":1}' }).waitFor();
      await phone.page.locator("#entries li").filter({ hasText: 'session:gone {"reason":"logged out everywhere"}' }).waitFor();
      const late = (await goneAt(phone.page)) - clicked;
      console.log(`lateness: browser, log out other devices: shown ${late} ms after the click`);
      assert.ok(late <= 1_000, `the other browser showed session:gone ${late} ms after the click`);
      await phone.page.locator("#view-user").filter({ hasText: "(logged out)" }).waitFor();
      await phone.page.locator("#view-devices").filter({ hasText: /^–$/ }).waitFor();
      // The caller's session goes on.
      await laptop.page.locator("#view-devices").filter({ hasText: /^signed in on 1 device$/ }).waitFor();
      await laptop.page.click("#sock-whoami");
      await laptop.page.locator("#view-last").filter({ hasText: 'whoami → {"user":"pat"}' }).waitFor();
      await phone.page.screenshot({ path: join(ARTIFACTS, "logout-others.png"), fullPage: true });
      assert.deepEqual([...laptop.errors, ...phone.errors], []);
    } catch (err) {
      for (const [i, page] of pages.entries()) {
        await page.screenshot({ path: join(ARTIFACTS, `logout-others-failure-${i}.png`), fullPage: true });
      }
      throw err;
    } finally {
      for (const page of pages) await page.close();
      await other.close();
      rmSync(otherProfile, { recursive: true, force: true });
    }
  });

  /** A page of the idle demo, on loopback only, logged in as `user` through its form. */
  async function idlePage(user) {
    // Both demos are 127.0.0.1: cookies don't tell ports apart, so start from none.
    await browser.clearCookies();
    const { page, errors } = await signedInPage(browser, idleServer.url, user);
    return { page, pageErrors: errors };
  }

  /**
   * A new page of `context` on the demo at `url`, on loopback only, logged in as `user` through
   * its form and its socket reconnected with the new cookie; `errors` collects its page errors.
   */
  async function signedInPage(context, url, user) {
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    const errors = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await stayOnLoopback(page);
    await page.goto(url + "/");
    await page.locator("#view-socket").filter({ hasText: "connected (websocket)" }).waitFor();
    await page.fill("#user", user);
    await page.click("#http-login");
    await page.locator("#view-user").filter({ hasText: new RegExp(`^${user}$`) }).waitFor();
    await page.locator("#entries li").filter({ hasText: /connected$/ }).nth(1).waitFor();
    return { page, errors };
  }

  /**
   * From now on `page` notes when `session:gone` first shows in its log, by the page's clock
   * (the same as this process's): `goneAt(page)` reads it.
   */
  async function watchGone(page) {
    await page.evaluate(() => {
      new MutationObserver((_, observer) => {
        if (document.getElementById("entries").textContent.includes("session:gone")) {
          window.goneAt = Date.now();
          observer.disconnect();
        }
      }).observe(document.getElementById("entries"), { childList: true });
    });
  }

  const goneAt = (page) => page.evaluate(() => window.goneAt);

  test("a page active only over its socket keeps its cookie: reloaded after 3 windows, still logged in", { timeout: 120_000 }, async () => {
    const { page, pageErrors } = await idlePage("dora");
    // Every HTTP request the page makes from now on.
    const requests = [];
    page.on("request", (req) => requests.push(`${req.method()} ${new URL(req.url()).pathname}`));
    try {
      const end = Date.now() + 3 * WINDOW_MS;
      let clicks = 0;
      while (Date.now() < end) {
        const clicked = Date.now();
        await page.click("#sock-whoami");
        clicks += 1;
        await page.locator("#entries li").filter({ hasText: 'whoami → {"user":"dora"}' }).nth(clicks - 1).waitFor();
        await new Promise((resolve) => setTimeout(resolve, WINDOW_MS / 3 - (Date.now() - clicked)));
      }
      // Nothing over HTTP but the page's reads of `GET /session` (which at most touch the
      // expiry) and its answers to `session:refresh`.
      const writes = requests.filter((r) => !r.startsWith("GET /session"));
      const cookies = await browser.cookies(idleServer.url);
      assert.ok(cookies.some((c) => c.name === "id"), "the browser dropped the session cookie");
      await page.reload();
      await page.locator("#view-socket").filter({ hasText: "connected (websocket)" }).waitFor();
      await page.locator("#view-user").filter({ hasText: /^dora$/ }).waitFor();
      assert.ok(writes.length > 0, "the page never answered session:refresh");
      assert.ok(writes.every((r) => r === "POST /session/refresh"), JSON.stringify(writes));
      await page.click("#sock-whoami");
      await page.locator("#view-last").filter({ hasText: 'whoami → {"user":"dora"}' }).waitFor();
    } catch (err) {
      await page.screenshot({ path: join(ARTIFACTS, "keep-alive-failure.png"), fullPage: true });
      throw err;
    }
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  test("a page left idle for 1.5 windows is told its session expired, and is logged out reloaded", { timeout: 60_000 }, async () => {
    const { page, pageErrors } = await idlePage("erin");
    // The login's answer has come: the session expires at most a window from now.
    const loggedIn = Date.now();
    try {
      await watchGone(page);
      await new Promise((resolve) => setTimeout(resolve, 1.5 * WINDOW_MS));
      await page.locator("#entries li").filter({ hasText: 'session:gone {"reason":"expired"}' }).waitFor();
      const late = (await goneAt(page)) - loggedIn - WINDOW_MS;
      console.log(`lateness: browser, expiry: at most ${late} ms after the expiry`);
      assert.ok(late <= 1_000, `session:gone shown ${late} ms after the session expired`);
      await page.locator("#view-user").filter({ hasText: "(logged out)" }).waitFor();
      await page.reload();
      await page.locator("#view-socket").filter({ hasText: "connected (websocket)" }).waitFor();
      await page.locator("#view-user").filter({ hasText: "(logged out)" }).waitFor();
      await page.click("#sock-whoami");
      await page.locator("#view-last").filter({ hasText: 'whoami → {"user":null}' }).waitFor();
    } catch (err) {
      await page.screenshot({ path: join(ARTIFACTS, "expiry-failure.png"), fullPage: true });
      throw err;
    }
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  /** Logs in, clicks through every button, and checks what the page shows. */
  async function drive(page, cdnRequests) {
    const text = (id) => page.locator(id);
    const lastAnswer = text("#view-last");

    await page.goto(server.url + "/");
    assert.equal(cdnRequests.length, 1, "the page loads the client from cdn.socket.io");
    await text("#view-socket").filter({ hasText: "connected (websocket)" }).waitFor();
    await text("#view-user").filter({ hasText: "(logged out)" }).waitFor();

    // Log in through the form: HTTP sets the cookie, the page reconnects its socket.
    await page.fill("#user", "alice");
    await page.click("#http-login");
    await text("#view-user").filter({ hasText: /^alice$/ }).waitFor();
    await text("#view-count").filter({ hasText: /^0$/ }).waitFor();
    await text("#entries li").filter({ hasText: /connected$/ }).nth(1).waitFor();

    await page.click("#sock-whoami");
    await lastAnswer.filter({ hasText: 'whoami → {"user":"alice"}' }).waitFor();

    // Socket and HTTP increments meet in one count.
    await page.click("#sock-incr");
    await lastAnswer.filter({ hasText: "incr → 1" }).waitFor();
    await page.click("#http-incr");
    await text("#view-count").filter({ hasText: /^2$/ }).waitFor();
    await page.click("#sock-incr");
    await lastAnswer.filter({ hasText: "incr → 3" }).waitFor();
    await text("#view-count").filter({ hasText: /^3$/ }).waitFor();

    // What the page shows is what the server holds.
    const cookies = await browser.cookies(server.url);
    const id = cookies.find((c) => c.name === "id");
    assert.ok(id, "the browser holds the session cookie");
    assert.equal(id.httpOnly, true);
    const fromNode = new Client(server.url);
    fromNode.cookie = `id=${id.value}`;
    assert.deepEqual(await fromNode.session(), { user: "alice", count: 3 });

    await page.click("#sock-login"); // user field still says alice
    await lastAnswer.filter({ hasText: 'login → {"ok":true}' }).waitFor();
    await page.fill("#user", "bob");
    await page.click("#sock-login");
    await text("#view-user").filter({ hasText: /^bob$/ }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "login_logout.png"), fullPage: true });
    if (process.env.E2E_README_SCREENSHOT) {
      await page.screenshot({ path: process.env.E2E_README_SCREENSHOT, fullPage: true });
    }

    // A bad name is refused and changes nothing.
    await page.fill("#user", "");
    await page.click("#sock-login");
    await lastAnswer.filter({ hasText: "error" }).waitFor();
    await text("#view-user").filter({ hasText: /^bob$/ }).waitFor();

    await page.click("#sock-logout");
    await text("#view-user").filter({ hasText: "(logged out)" }).waitFor();
    await text("#view-count").filter({ hasText: /^3$/ }).waitFor();

    // An HTTP logout reaches the live socket at once: it is told, its writes fail, its
    // session stays gone.
    await page.fill("#user", "carol");
    await page.click("#http-login");
    await text("#view-user").filter({ hasText: /^carol$/ }).waitFor();
    await text("#view-socket").filter({ hasText: "connected (websocket)" }).waitFor();
    await page.click("#http-logout");
    await text("#entries li").filter({ hasText: 'session:gone {"reason":"logged out"}' }).waitFor();
    await text("#view-user").filter({ hasText: "(logged out)" }).waitFor();
    await page.click("#sock-incr");
    await lastAnswer.filter({ hasText: /incr → \{"error":".*gone/ }).waitFor();
    await text("#view-count").filter({ hasText: /^0$/ }).waitFor();
    assert.equal(await text("#view-socket").textContent(), "connected (websocket)");

    await page.screenshot({ path: join(ARTIFACTS, "login_logout-end.png"), fullPage: true });
  }
}
