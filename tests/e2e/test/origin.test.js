// The origin check (bench-protocol.md: "A socket.io request whose `Origin` is another site is
// refused (403); same-origin requests and clients that send no `Origin` are served"), with the
// official client in Node, where a test may set `Origin` to anything, on both transports.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { io } from "socket.io-client";
import { Client, TIMEOUT_MS, ack, connect, startServer } from "./helpers.js";

const EVIL = "http://evil.example";

let server;
let alice;

before(async () => {
  server = await startServer();
  alice = new Client(server.url);
  assert.equal((await alice.login("alice")).status, 200);
});

after(async () => {
  await server?.stop();
});

/** Connects with `headers` over one transport; resolves `"connected"` or the error message. */
function attempt(transport, headers) {
  const socket = io(server.url, {
    transports: [transport],
    upgrade: false,
    forceNew: true,
    reconnection: false,
    timeout: TIMEOUT_MS,
    extraHeaders: headers,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${transport}: no answer in time`)), TIMEOUT_MS);
    const done = (outcome) => {
      clearTimeout(timer);
      socket.close();
      resolve(outcome);
    };
    socket.once("connect", () => done("connected"));
    socket.once("connect_error", (err) => done(`connect_error: ${err.message}`));
  });
}

for (const transport of ["websocket", "polling"]) {
  test(`${transport}: a page of another site is refused, even with the victim's cookie`, async () => {
    const outcome = await attempt(transport, { cookie: alice.cookie, origin: EVIL });
    assert.match(outcome, /^connect_error/, `${transport} connected from ${EVIL}`);
  });

  test(`${transport}: the app's own page is served`, async () => {
    assert.equal(await attempt(transport, { cookie: alice.cookie, origin: server.url }), "connected");
  });

  test(`${transport}: a client without Origin is served`, async () => {
    const socket = await connect(server.url, alice.cookie, transport);
    assert.deepEqual(await ack(socket, "whoami"), { user: "alice" });
    socket.close();
  });
}

test("every socket.io request from another site gets 403 with a reason, other routes do not", async () => {
  const handshake = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
    headers: { origin: EVIL, cookie: alice.cookie },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  assert.equal(handshake.status, 403);
  assert.match(await handshake.text(), /cross-origin/);
  // A lookalike of the app's own origin is another site too.
  const port = new URL(server.url).port;
  for (const origin of [`http://127.0.0.1:${Number(port) + 1}`, `http://127.0.0.1.evil.example:${port}`, "null"]) {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { origin },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    assert.equal(res.status, 403, origin);
  }
  // The check guards socket.io only; the HTTP routes keep their own rules.
  const session = await fetch(`${server.url}/session`, {
    headers: { origin: EVIL, cookie: alice.cookie },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  assert.equal(session.status, 200);
});
