// The protocol of shared/bench-protocol.md, driven by the official socket.io client in Node.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client, ack, connect, isError, range, startServer, within } from "./helpers.js";

const TRANSPORTS = ["websocket", "polling"];

let server;
const sockets = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const socket of sockets) socket.disconnect();
  await server?.stop();
});

/** Connects and remembers the socket so that `after` closes it even when a test fails. */
async function open(cookie, transport) {
  const socket = await connect(server.url, cookie, transport);
  sockets.push(socket);
  return socket;
}

/** A fresh browser-like client, logged in as `user`. */
async function loggedIn(user) {
  const client = new Client(server.url);
  const res = await client.login(user);
  assert.equal(res.status, 200, res.text);
  return client;
}

describe("HTTP", () => {
  test("login sets the user and count 0, and answers with a cookie", async () => {
    const client = new Client(server.url);
    const res = await client.login("alice");
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { user: "alice" });
    assert.ok(res.setCookie, "login must set the session cookie");
    assert.deepEqual(await client.session(), { user: "alice", count: 0 });
  });

  test("login rotates the session id and keeps the count", async () => {
    const client = new Client(server.url);
    assert.deepEqual((await client.post("/incr")).json, { count: 1 });
    const before = client.cookie;
    assert.ok(before, "an anonymous increment starts a session");
    assert.equal((await client.login("alice")).status, 200);
    assert.notEqual(client.cookie, before, "login must issue a new session id");
    assert.deepEqual(await client.session(), { user: "alice", count: 1 });
    // The id planted before login is worthless now.
    const planted = new Client(server.url);
    planted.cookie = before;
    assert.deepEqual(await planted.session(), { user: null, count: 0 });
  });

  test("incr counts and session reads", async () => {
    const client = await loggedIn("carol");
    assert.deepEqual((await client.post("/incr")).json, { count: 1 });
    assert.deepEqual((await client.post("/incr")).json, { count: 2 });
    assert.deepEqual(await client.session(), { user: "carol", count: 2 });
  });

  test("logout deletes the session", async () => {
    const client = await loggedIn("dave");
    const res = await client.post("/logout");
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { ok: true });
    assert.deepEqual(await client.session(), { user: null, count: 0 });
  });

  test("a request without a cookie reads an empty session", async () => {
    assert.deepEqual(await new Client(server.url).session(), { user: null, count: 0 });
  });

  test("GET / serves the demo page with the official client from its CDN", async () => {
    const res = await new Client(server.url).get("/");
    assert.equal(res.status, 200);
    assert.match(res.contentType, /^text\/html/);
    assert.match(res.text, /<script src="https:\/\/cdn\.socket\.io\/4\.\d+\.\d+\/socket\.io\.min\.js"/);
  });

  test("bad login bodies get 400 JSON and change nothing", async () => {
    const client = await loggedIn("erin");
    await client.post("/incr");
    const cookie = client.cookie;
    const bad = [
      "not json",
      "",
      "{",
      "null",
      "[]",
      '"erin"',
      "{}",
      '{"name":"mallory"}',
      '{"user":null}',
      '{"user":5}',
      '{"user":["mallory"]}',
      '["mallory"]',
      '{"user":""}',
      JSON.stringify({ user: "m".repeat(65) }),
    ];
    for (const body of bad) {
      const res = await client.post("/login", body);
      assert.equal(res.status, 400, `body ${JSON.stringify(body)}: ${res.status} ${res.text}`);
      assert.match(res.contentType, /^application\/json/, `body ${JSON.stringify(body)}`);
      assert.ok(isError(res.json), `body ${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.setCookie, false, `body ${JSON.stringify(body)} must not touch the cookie`);
    }
    assert.equal(client.cookie, cookie);
    assert.deepEqual(await client.session(), { user: "erin", count: 1 });

    // Without a cookie, a bad body must not start a session either.
    const anonymous = new Client(server.url);
    const res = await anonymous.post("/login", "not json");
    assert.equal(res.status, 400);
    assert.equal(res.setCookie, false);
  });

  test("a user name of 64 characters is accepted, 65 are not", async () => {
    const name64 = "é".repeat(64); // characters, not bytes
    const client = new Client(server.url);
    const ok = await client.login(name64);
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(await client.session(), { user: name64, count: 0 });
    assert.equal((await client.login("é".repeat(65))).status, 400);
  });

  test("GET /get/session answers the caller's own session, allow-listed keys only", async () => {
    const alice = await loggedIn("alice");
    await alice.post("/incr");
    const bob = await loggedIn("bob");
    const mine = await alice.get("/get/session");
    assert.equal(mine.status, 200);
    assert.deepEqual(mine.json, { user: "alice", count: 1 });
    assert.deepEqual((await bob.get("/get/session")).json, { user: "bob", count: 0 });
    // No way to name another session: an id in the query is ignored.
    const anonymous = new Client(server.url);
    const id = encodeURIComponent(alice.cookie.split("=").slice(1).join("="));
    assert.deepEqual((await anonymous.get(`/get/session?id=${id}`)).json, {});
    assert.equal((await anonymous.post("/get/session")).status, 405);
  });
});

for (const transport of TRANSPORTS) {
  describe(`socket.io over ${transport}`, () => {
    test("connects with the session cookie over this transport only", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      assert.equal(socket.io.engine.transport.name, transport);
      socket.disconnect();
    });

    test("every event of the protocol", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      assert.deepEqual(await ack(socket, "whoami"), { user: "alice" });
      assert.equal(await ack(socket, "incr"), 1);
      assert.equal(await ack(socket, "incr"), 2);
      assert.deepEqual(await ack(socket, "login", { user: "bob" }), { ok: true });
      assert.deepEqual(await ack(socket, "whoami"), { user: "bob" });
      assert.deepEqual(await ack(socket, "logout"), { ok: true });
      assert.deepEqual(await ack(socket, "whoami"), { user: null });
      // Socket logout removes the user and keeps the session.
      assert.deepEqual(await client.session(), { user: null, count: 2 });
      assert.deepEqual(await ack(socket, "login", { user: "carol" }), { ok: true });
      assert.deepEqual(await client.session(), { user: "carol", count: 2 });
      socket.disconnect();
    });

    test("HTTP changes are seen by the very next socket event", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      assert.equal(await ack(socket, "incr"), 1);
      assert.deepEqual((await client.post("/incr")).json, { count: 2 });
      assert.equal(await ack(socket, "incr"), 3);
      assert.deepEqual((await client.post("/incr")).json, { count: 4 });
      assert.deepEqual((await client.post("/incr")).json, { count: 5 });
      assert.equal(await ack(socket, "incr"), 6);
      socket.disconnect();
    });

    test("socket changes are seen by the very next HTTP request", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      assert.equal(await ack(socket, "incr"), 1);
      assert.deepEqual(await client.session(), { user: "alice", count: 1 });
      assert.deepEqual(await ack(socket, "login", { user: "bob" }), { ok: true });
      assert.deepEqual(await client.session(), { user: "bob", count: 1 });
      assert.deepEqual((await client.get("/get/session")).json, { user: "bob", count: 1 });
      assert.deepEqual(await ack(socket, "logout"), { ok: true });
      assert.deepEqual(await client.session(), { user: null, count: 1 });
      socket.disconnect();
    });

    test("an HTTP logout reaches a live socket and is never undone", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      assert.equal(await ack(socket, "incr"), 1);
      const oldCookie = client.cookie;
      assert.deepEqual((await client.post("/logout")).json, { ok: true });

      assert.deepEqual(await ack(socket, "whoami"), { user: null });
      const incr = await ack(socket, "incr");
      assert.ok(isError(incr), `incr after logout: ${JSON.stringify(incr)}`);
      assert.match(incr.error, /gone/);
      const relogin = await ack(socket, "login", { user: "mallory" });
      assert.ok(isError(relogin), `login after logout: ${JSON.stringify(relogin)}`);
      const logout = await ack(socket, "logout");
      assert.ok(isError(logout), `logout after logout: ${JSON.stringify(logout)}`);
      assert.ok(socket.connected, "the socket stays connected");

      // Nothing the socket did brought the record back under the old id.
      const old = new Client(server.url);
      old.cookie = oldCookie;
      assert.deepEqual(await old.session(), { user: null, count: 0 });
      assert.deepEqual((await old.get("/get/session")).json, {});
      socket.disconnect();
    });

    test("HTTP logout and login push session:gone to live sockets within 1 s", async () => {
      for (const [path, reason] of [["/logout", "logged out"], ["/login", "rotated"]]) {
        const client = await loggedIn("alice");
        const socket = await open(client.cookie, transport);
        const other = await open((await loggedIn("bob")).cookie, transport);
        const heard = [];
        other.on("session:gone", (data) => heard.push(data));
        const gone = new Promise((resolve) => socket.once("session:gone", resolve));
        const started = Date.now();
        const res = await client.post(path, path === "/login" ? { user: "alice" } : undefined);
        assert.equal(res.status, 200, res.text);
        const left = 1_000 - (Date.now() - started);
        assert.deepEqual(await within(left, gone, `${path}: session:gone`), { reason });
        // The old session's socket stays connected and anonymous; bob's heard nothing.
        assert.deepEqual(await ack(socket, "whoami"), { user: null });
        assert.ok(socket.connected, `${path}: the socket stays connected`);
        assert.deepEqual(await ack(other, "whoami"), { user: "bob" });
        assert.deepEqual(heard, [], `${path}: another session's socket was told`);
        socket.disconnect();
        other.disconnect();
      }
    });

    test("a socket without a session reads nothing and cannot write", async () => {
      const socket = await open(null, transport);
      assert.deepEqual(await ack(socket, "whoami"), { user: null });
      const incr = await ack(socket, "incr");
      assert.ok(isError(incr), JSON.stringify(incr));
      assert.ok(isError(await ack(socket, "login", { user: "mallory" })));
      assert.ok(socket.connected);
      socket.disconnect();
    });

    test("bad payloads get an error ack, change nothing, and the socket stays", async () => {
      const client = await loggedIn("alice");
      await client.post("/incr");
      const socket = await open(client.cookie, transport);
      const bad = [
        [],
        [null],
        ["bob"],
        [42],
        [["bob"]],
        [{}],
        [{ name: "bob" }],
        [{ user: null }],
        [{ user: 5 }],
        [{ user: { first: "bob" } }],
        [{ user: "" }],
        [{ user: "b".repeat(65) }],
      ];
      for (const args of bad) {
        const answer = await ack(socket, "login", ...args);
        assert.ok(isError(answer), `login ${JSON.stringify(args)} acked ${JSON.stringify(answer)}`);
        assert.ok(socket.connected, `login ${JSON.stringify(args)} disconnected the socket`);
      }
      assert.deepEqual(await ack(socket, "whoami"), { user: "alice" });
      assert.deepEqual(await client.session(), { user: "alice", count: 1 });
      assert.deepEqual(await ack(socket, "login", { user: "b".repeat(64) }), { ok: true });
      socket.disconnect();
    });

    test("a burst of 200 concurrent incr on one socket is acknowledged in full", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      const acks = await Promise.all(Array.from({ length: 200 }, () => ack(socket, "incr")));
      assert.ok(acks.every(Number.isInteger), `non-numeric acks: ${JSON.stringify(acks.filter((a) => !Number.isInteger(a)))}`);
      // Each increment saw the one before it: every count from 1 to 200 exactly once.
      assert.deepEqual([...acks].sort((a, b) => a - b), range(0, 200));
      assert.deepEqual(await client.session(), { user: "alice", count: 200 });
      socket.disconnect();
    });

    test("a burst of 200 concurrent whoami on one socket is acknowledged in full", async () => {
      const client = await loggedIn("alice");
      const socket = await open(client.cookie, transport);
      const acks = await Promise.all(Array.from({ length: 200 }, () => ack(socket, "whoami")));
      assert.equal(acks.length, 200);
      for (const answer of acks) assert.deepEqual(answer, { user: "alice" });
      socket.disconnect();
    });
  });
}

describe("socket.io over polling upgraded to websocket", () => {
  test("the session survives the upgrade", async () => {
    const client = await loggedIn("alice");
    const socket = await open(client.cookie, "upgrade");
    assert.equal(await ack(socket, "incr"), 1);
    if (socket.io.engine.transport.name !== "websocket") {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no upgrade in time")), 10_000);
        socket.io.engine.once("upgrade", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    assert.equal(socket.io.engine.transport.name, "websocket");
    assert.deepEqual(await ack(socket, "whoami"), { user: "alice" });
    assert.equal(await ack(socket, "incr"), 2);
    assert.deepEqual(await client.session(), { user: "alice", count: 2 });
    socket.disconnect();
  });
});

describe("concurrent writers of one session", () => {
  test("several sockets plus HTTP lose no increment", async () => {
    const client = await loggedIn("alice");
    const start = (await client.session()).count;
    const group = [
      await open(client.cookie, "websocket"),
      await open(client.cookie, "websocket"),
      await open(client.cookie, "polling"),
      await open(client.cookie, "polling"),
    ];
    // Several rounds, each a burst of socket events and HTTP requests at once: an HTTP route
    // without the lock loses updates only when it overlaps a socket event, so give it many
    // chances to.
    const ROUNDS = 3;
    const PER_SOCKET = 50;
    const HTTP = 80;
    const counts = [];
    for (let round = 0; round < ROUNDS; round++) {
      const socketAcks = group.flatMap((socket) =>
        Array.from({ length: PER_SOCKET }, () => ack(socket, "incr")),
      );
      const httpAcks = Array.from({ length: HTTP }, () =>
        client.post("/incr").then((res) => {
          assert.equal(res.status, 200, res.text);
          return res.json.count;
        }),
      );
      counts.push(...(await Promise.all([...socketAcks, ...httpAcks])));
    }
    const total = ROUNDS * (group.length * PER_SOCKET + HTTP);
    assert.ok(counts.every(Number.isInteger), `non-numeric answers: ${JSON.stringify(counts.filter((c) => !Number.isInteger(c)))}`);
    // Every increment saw the one before it: each count from start + 1 to start + total once.
    assert.deepEqual([...counts].sort((a, b) => a - b), range(start, total));
    assert.deepEqual(await client.session(), { user: "alice", count: start + total });
    for (const socket of group) socket.disconnect();
  });

  test("sessions do not share counts", async () => {
    const alice = await loggedIn("alice");
    const bob = await loggedIn("bob");
    const a = await open(alice.cookie, "websocket");
    const b = await open(bob.cookie, "polling");
    await Promise.all([
      ...Array.from({ length: 30 }, () => ack(a, "incr")),
      ...Array.from({ length: 20 }, () => ack(b, "incr")),
    ]);
    assert.deepEqual(await alice.session(), { user: "alice", count: 30 });
    assert.deepEqual(await bob.session(), { user: "bob", count: 20 });
    a.disconnect();
    b.disconnect();
  });
});
