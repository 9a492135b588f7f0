// Shared by the end-to-end tests: start the demo binary, talk HTTP with a one-cookie jar,
// and connect the official socket.io client with that cookie.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

/** Every wait in these tests is bounded by this, so nothing hangs. */
export const TIMEOUT_MS = 10_000;

/**
 * Starts the demo on a free port (`PORT=0`) and resolves once it prints its address.
 * The binary comes from `LOGIN_LOGOUT_BIN`, which `cargo test --test e2e` sets; `env` adds to
 * its environment (e.g. `REDIS_URL` or `DATABASE_URL`, and `SESSION_KEY`, for one of several
 * nodes; `undefined` removes a variable, e.g. both URLs for a node on its own `MemoryStore`).
 */
export async function startServer(env = {}) {
  const bin = process.env.LOGIN_LOGOUT_BIN;
  if (!bin) {
    throw new Error(
      "LOGIN_LOGOUT_BIN is not set: run these tests through `cargo test --test e2e`, " +
        "or build with `cargo build --example login_logout` and point it at the binary",
    );
  }
  // A variable given as `undefined` is left out, even if this process has it.
  const merged = { ...process.env, PORT: "0", RUST_LOG: process.env.RUST_LOG ?? "warn", ...env };
  for (const [name, value] of Object.entries(merged)) if (value === undefined) delete merged[name];
  const child = spawn(bin, [], {
    env: merged,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the demo did not print its address within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited before listening (code ${code}, signal ${signal})`));
    });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line.trim());
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  child.removeAllListeners("exit");
  // Should the test process die first, the demo must not outlive it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  return {
    url,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
      process.off("exit", killOnExit);
    },
  };
}

/**
 * The database that several demo nodes share, from whichever of `REDIS_URL` and `DATABASE_URL`
 * is set (`cargo test --test e2e` runs the two-node suites once on each): its `name` for the
 * suite titles ("two nodes on one Redis"), its `variable` and the demo's `env` for it (with
 * `SESSION_KEY`, which every node must share). `null` when neither is set; both set is a
 * mistake, and throws.
 */
export function sharedBackend() {
  const { REDIS_URL, DATABASE_URL, SESSION_KEY } = process.env;
  if (REDIS_URL && DATABASE_URL) {
    throw new Error("both REDIS_URL and DATABASE_URL are set: set one, the database the nodes share");
  }
  if (REDIS_URL) {
    return { name: "Redis", variable: "REDIS_URL", env: { REDIS_URL, SESSION_KEY } };
  }
  if (DATABASE_URL) {
    return {
      name: "PostgreSQL",
      variable: "DATABASE_URL",
      env: { DATABASE_URL, SESSION_KEY },
    };
  }
  return null;
}

/** An HTTP client with the demo's one session cookie, like a browser tab. */
export class Client {
  constructor(url) {
    this.url = url;
    this.cookie = null;
  }

  /** Sends a request; `body` is sent as is when a string, as JSON otherwise. */
  async request(method, path, body) {
    const headers = {};
    if (this.cookie) headers.cookie = this.cookie;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const setCookies = res.headers.getSetCookie();
    for (const line of setCookies) {
      const pair = line.split(";")[0];
      // A removal (Max-Age=0) empties the jar.
      this.cookie = /max-age=0/i.test(line) ? null : pair;
    }
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: res.status,
      contentType: res.headers.get("content-type"),
      setCookie: setCookies.length > 0,
      json,
      text,
    };
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  /** Logs in over HTTP and returns the answer. */
  async login(user) {
    return this.post("/login", { user });
  }

  /** The session as `GET /session` shows it. */
  async session() {
    const res = await this.get("/session");
    if (res.status !== 200) throw new Error(`GET /session: ${res.status} ${res.text}`);
    return res.json;
  }
}

/**
 * Connects the official client with `cookie` (or none) over exactly one transport, so a
 * test knows which one it exercises.
 */
export async function connect(url, cookie, transport) {
  // "upgrade": the client's default, polling first and then an upgrade to websocket.
  const upgrade = transport === "upgrade";
  const socket = io(url, {
    transports: upgrade ? ["polling", "websocket"] : [transport],
    upgrade,
    forceNew: true,
    reconnection: false,
    timeout: TIMEOUT_MS,
    // In Node the client sends these on the polling requests and the websocket handshake.
    extraHeaders: cookie ? { cookie } : {},
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${transport}: no connect in time`)), TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${transport}: connect_error: ${err.message}`));
    });
  });
  return socket;
}

/** Emits `event` (with `args`) and resolves with its acknowledgement. */
export function ack(socket, event, ...args) {
  return socket.timeout(TIMEOUT_MS).emitWithAck(event, ...args);
}

/** Resolves as `promise` does, or rejects once `ms` have passed without it. */
export async function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), Math.max(ms, 0));
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether an acknowledgement is `{"error": "<non-empty string>"}`. */
export function isError(answer) {
  return (
    answer !== null &&
    typeof answer === "object" &&
    Object.keys(answer).length === 1 &&
    typeof answer.error === "string" &&
    answer.error.length > 0
  );
}

/** The numbers 1..=n (start excluded), for comparing sets of counts. */
export function range(start, n) {
  return Array.from({ length: n }, (_, i) => start + i + 1);
}
