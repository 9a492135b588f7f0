// The Node stack of the benchmark, written as express-socket.io-session's README shows:
// the handshake's session in `socket.handshake.session`, reloaded and saved by hand in every
// handler, no lock. Speaks bench-protocol.md; prints `listening on 127.0.0.1:PORT`.
//
//   node server.js [--port P] [--no-session]
//   REDIS_URL=redis://127.0.0.1:6379 node server.js   # several nodes on one Redis
//
// `--no-session` leaves the session off the sockets (the memory baseline). With `REDIS_URL`,
// sessions live in Redis (connect-redis) and broadcasts cross nodes (@socket.io/redis-adapter),
// as the socket.io and express-session docs show for several nodes: there is still no lock.
'use strict';

const http = require('http');
const express = require('express');
const session = require('express-session');
const { Server } = require('socket.io');
const sharedsession = require('express-socket.io-session');
const { createClient } = require('redis');
const { RedisStore } = require('connect-redis');
const { createAdapter } = require('@socket.io/redis-adapter');

const args = process.argv.slice(2);
const portArg = args.indexOf('--port');
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const attach = !args.includes('--no-session');
const redisUrl = process.env.REDIS_URL;

async function main() {
  const redis = redisUrl ? createClient({ url: redisUrl }) : null;
  if (redis) await redis.connect();

  const app = express();
  const sessionMiddleware = session({
    store: redis ? new RedisStore({ client: redis }) : undefined,
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
