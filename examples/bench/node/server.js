// The Node stack of the benchmark, written as express-socket.io-session's README shows:
// the handshake's session in `socket.handshake.session`, reloaded and saved by hand in every
// handler, no lock. Speaks bench-protocol.md; prints `listening on 127.0.0.1:PORT`.
//
//   node server.js [--port P] [--no-session]
//   REDIS_URL=redis://127.0.0.1:6379 node server.js   # several nodes on one Redis
//   DATABASE_URL=postgres://user@127.0.0.1:5432/db node server.js   # several nodes on one PostgreSQL
//
// `--no-session` leaves the session off the sockets (the memory baseline). With `REDIS_URL`,
// sessions live in Redis (connect-redis) and broadcasts cross nodes (@socket.io/redis-adapter),
// as the socket.io and express-session docs show for several nodes: there is still no lock.
// With `DATABASE_URL`, the same in PostgreSQL: sessions in the table `session`
// (connect-pg-simple, created if missing) and broadcasts through LISTEN/NOTIFY
// (@socket.io/postgres-adapter, its attachments in `socket_io_attachments`), both on one
// `pg` Pool, as their READMEs show; still no lock. Not both at once.
'use strict';

const http = require('http');
const express = require('express');
const session = require('express-session');
const { Server } = require('socket.io');
const sharedsession = require('express-socket.io-session');
const { createClient } = require('redis');
const { RedisStore } = require('connect-redis');
const { createAdapter } = require('@socket.io/redis-adapter');
const pg = require('pg');
const PgStore = require('connect-pg-simple')(session);
const { createAdapter: createPgAdapter } = require('@socket.io/postgres-adapter');

const args = process.argv.slice(2);
const portArg = args.indexOf('--port');
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const attach = !args.includes('--no-session');
const redisUrl = process.env.REDIS_URL;
const databaseUrl = process.env.DATABASE_URL;

// The table @socket.io/postgres-adapter keeps its large or binary payloads in (its README).
const ATTACHMENTS_TABLE = `CREATE TABLE IF NOT EXISTS socket_io_attachments (
  id          bigserial UNIQUE,
  created_at  timestamptz DEFAULT NOW(),
  payload     bytea
)`;
// Any fixed key: the nodes that start at once on one database take turns creating the tables.
const SCHEMA_LOCK = 7263510394;

// Creates the adapter's table and the store's `session` table before the node serves anyone.
// `CREATE TABLE IF NOT EXISTS` is not safe against another node doing the same at the same
// moment (a unique violation in the catalog), and connect-pg-simple keeps a failed creation
// for good (every later query of that store fails), so the nodes take a lock first.
async function createTables(pool, store) {
  const client = await pool.connect();
  let failed;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
    await client.query(ATTACHMENTS_TABLE);
    // Any store query creates the table first (`createTableIfMissing`); this id never exists.
    await new Promise((resolve, reject) => store.get('', (err) => (err ? reject(err) : resolve())));
    await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]);
  } catch (err) {
    failed = err;
    throw err;
  } finally {
    // After a failure the connection is closed, not pooled: that drops the lock it may hold.
    client.release(failed);
  }
}

async function main() {
  if (redisUrl && databaseUrl) {
    throw new Error('REDIS_URL and DATABASE_URL are both set: sessions go to one of them, set only one');
  }
  const redis = redisUrl ? createClient({ url: redisUrl }) : null;
  if (redis) await redis.connect();
  const pool = databaseUrl ? new pg.Pool({ connectionString: databaseUrl }) : null;
  // An idle client that loses its server: logged, not a crash (the pg README).
  if (pool) pool.on('error', (err) => console.error('postgres pool:', err.message || err));
  const pgStore = pool ? new PgStore({ pool, createTableIfMissing: true }) : null;
  if (pool) await createTables(pool, pgStore);

  const app = express();
  const sessionMiddleware = session({
    store: redis ? new RedisStore({ client: redis }) : pgStore ?? undefined,
    secret: 'bench-only-secret',
    resave: false,
    saveUninitialized: false,
    cookie: { secure: false, httpOnly: true },
  });
  app.use(express.json({ strict: false }));
  app.use(sessionMiddleware);

  app.get('/', (_req, res) => res.type('text').send('node bench server: see bench-protocol.md'));

  app.post('/login', (req, res, next) => {
    const user = req.body && typeof req.body === 'object' ? req.body.user : undefined;
    if (typeof user !== 'string' || user.length === 0 || [...user].length > 64) {
      return res.status(400).json({ error: '`user` must be a non-empty string of at most 64 chars' });
    }
    const count = req.session.count;
    // Fixation defence: a login gets a new id.
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = user;
      req.session.count = Number.isInteger(count) ? count : 0;
      req.session.save((err) => (err ? next(err) : res.json({ user })));
    });
  });

  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
  });

  app.get('/session', (req, res) => {
    res.json({ user: req.session.user ?? null, count: req.session.count ?? 0 });
  });

  app.post('/incr', (req, res) => {
    req.session.count = (req.session.count ?? 0) + 1;
    res.json({ count: req.session.count });
  });

  // Bad JSON bodies and store failures: a JSON error, never a crash.
  app.use((err, _req, res, _next) => {
    res.status(err.status && err.status < 500 ? err.status : 500).json({ error: String(err.message || err) });
  });

  const server = http.createServer(app);
  const io = new Server(server, { serveClient: false });
  if (redis) {
    const sub = redis.duplicate();
    await sub.connect();
    io.adapter(createAdapter(redis, sub));
  }
  if (pool) io.adapter(createPgAdapter(pool));
  if (attach) io.use(sharedsession(sessionMiddleware));

  function lastFn(args) {
    const f = args[args.length - 1];
    return typeof f === 'function' ? f : () => {};
  }

  io.on('connection', (socket) => {
    socket.on('incr', (...args) => {
      const ack = lastFn(args);
      if (!socket.handshake.session) return ack({ error: 'no session' });
      socket.handshake.session.reload((err) => {
        if (err) return ack({ error: String(err.message || err) });
        // reload() replaced the object: read it again.
        const s = socket.handshake.session;
        s.count = (s.count ?? 0) + 1;
        s.save((err) => (err ? ack({ error: String(err.message || err) }) : ack(s.count)));
      });
    });
    socket.on('whoami', (...args) => {
      const ack = lastFn(args);
      if (!socket.handshake.session) return ack({ user: null });
      socket.handshake.session.reload((err) => {
        if (err) return ack({ error: String(err.message || err) });
        ack({ user: socket.handshake.session.user ?? null });
      });
    });
  });

  server.listen(port, '127.0.0.1', () => {
    console.log(`listening on 127.0.0.1:${server.address().port}`);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
