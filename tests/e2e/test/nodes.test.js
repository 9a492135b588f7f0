// Two demo processes on one Redis (`REDIS_URL`) or one PostgreSQL (`DATABASE_URL`), with a shared
// `SESSION_KEY`, driven by the official socket.io client as a load balancer would spread one
// user's requests: every rule of bench-protocol.md holds across them. `cargo test --test e2e`
// runs this file twice, with a redis-server of its own and then a PostgreSQL server of its own,
// setting one URL (never both) and the key; without them this file is not run.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  Client,
  ack,
  connect,
  isError,
  range,
  sharedBackend,
  startServer,
  within,
} from "./helpers.js";

const TRANSPORTS = ["websocket", "polling"];
/** Redis or PostgreSQL, whichever URL is set; `null` when neither is (a failure in `before`). */
const backend = sharedBackend();
const ONE = backend ? `one ${backend.name}` : "one Redis or PostgreSQL";

const nodes = [];
const sockets = [];

before(async () => {
  if (!backend?.env.SESSION_KEY) {
    throw new Error(
      "REDIS_URL or DATABASE_URL, and SESSION_KEY, must be set: run through `cargo test --test e2e`",
    );
  }
  nodes.push(await startServer(backend.env), await startServer(backend.env));
});

after(async () => {
  for (const socket of sockets) socket.disconnect();
  await Promise.all(nodes.map((node) => node.stop()));
});

/** Connects to `node` and remembers the socket so that `after` closes it even on failure. */
async function open(node, cookie, transport) {
  const socket = await connect(node.url, cookie, transport);
  sockets.push(socket);
  return socket;
}

/** A browser-like client on node `a`, logged in as `user`, and the same cookie on node `b`. */
async function loggedIn(user) {
  const [a, b] = nodes;
  const onA = new Client(a.url);
  const res = await onA.login(user);
  assert.equal(res.status, 200, res.text);
  const onB = new Client(b.url);
  onB.cookie = onA.cookie;
  return { onA, onB };
}

for (const transport of TRANSPORTS) {
  describe(`two nodes on ${ONE}, ${transport}`, () => {
    test("a login on one node is the session of a socket on the other, writes cross both ways", async () => {
      const [a, b] = nodes;
      const { onA, onB } = await loggedIn("alice");
      const onNodeB = await open(b, onA.cookie, transport);
      const onNodeA = await open(a, onA.cookie, transport);
      assert.deepEqual(await ack(onNodeB, "whoami"), { user: "alice" });
      assert.equal(await ack(onNodeB, "incr"), 1);
      assert.deepEqual(await onA.session(), { user: "alice", count: 1 });
      assert.equal((await onB.post("/incr")).json.count, 2);
      assert.equal(await ack(onNodeA, "incr"), 3);
      assert.deepEqual(await ack(onNodeA, "login", { user: "bob" }), { ok: true });
      assert.deepEqual(await ack(onNodeB, "whoami"), { user: "bob" });
    });

    test("a burst from sockets on both nodes and HTTP on both ends exact, each count once", async () => {
      const [a, b] = nodes;
      const { onA, onB } = await loggedIn("alice");
      const socketA = await open(a, onA.cookie, transport);
      const socketB = await open(b, onA.cookie, transport);
      const K = 60;
      const H = 15;
      const answers = await Promise.all([
        ...range(0, K).map(() => ack(socketA, "incr")),
        ...range(0, K).map(() => ack(socketB, "incr")),
        ...range(0, H).map(() => onA.post("/incr").then((res) => res.json.count)),
        ...range(0, H).map(() => onB.post("/incr").then((res) => res.json.count)),
      ]);
      const total = 2 * K + 2 * H;
      assert.deepEqual(
        [...answers].sort((x, y) => x - y),
        range(0, total),
        `every count from 1 to ${total} handed out once: ${JSON.stringify(answers)}`,
      );
      assert.equal((await onB.session()).count, total);
    });

    test("an HTTP logout on one node pushes session:gone to the sockets on the other within 1 s", async () => {
      const [a, b] = nodes;
      const { onA, onB } = await loggedIn("alice");
      const onNodeB = await open(b, onA.cookie, transport);
      const other = await open(b, (await loggedIn("carol")).onA.cookie, transport);
      const heard = [];
      other.on("session:gone", (data) => heard.push(data));
      assert.equal(await ack(onNodeB, "incr"), 1);
      const gone = new Promise((resolve) => onNodeB.once("session:gone", resolve));
      const started = Date.now();
      assert.equal((await onA.post("/logout")).status, 200);
      const left = 1_000 - (Date.now() - started);
      assert.deepEqual(await within(left, gone, "session:gone on the other node"), {
        reason: "logged out",
      });
      // Nothing brings the session back: not a socket write, on either node.
      assert.deepEqual(await ack(onNodeB, "whoami"), { user: null });
      assert.ok(isError(await ack(onNodeB, "incr")));
      const late = await open(a, onB.cookie, transport);
      assert.ok(isError(await ack(late, "incr")));
      assert.deepEqual(await onB.session(), { user: null, count: 0 });
      assert.deepEqual(await ack(other, "whoami"), { user: "carol" });
      assert.deepEqual(heard, [], "another session's socket was told");
    });
  });
}
