#!/usr/bin/env bash
# Runs the whole benchmark and writes examples/bench/REPORT.md, examples/bench/bench.svg and
# the raw figures examples/bench/results.jsonl. From the repository root:
#
#   examples/bench/run.sh
#
# Knobs (environment): REPS (3) repetitions of every measurement, medians reported;
# DURATION (4) seconds per closed loop after WARMUP (1); CLIENTS (50) closed-loop sockets;
# BURST_SOCKETS (20) x BURST_K (200) concurrent `incr` on one session; LATENCY_BURST_K (25)
# for the 2 ms store-latency burst; IDLE_SOCKETS (10000) for the memory figures; MEM_REPS (1);
# PROFILE (1): also profile five variants under valgrind's callgrind (PROFILE_DURATION 5 s each);
# SERVER_CPU (0) and LOADGEN_CPU (1): the cores the server and the load generator are pinned to.
# REDIS (1): also measure one and two nodes on one Redis (needs redis-server; skipped without):
# closed loops, Redis round trips per event (redis-cli MONITOR, a run of its own), and a burst
# of REDIS_BURST_K `incr` from each of two sockets of one session on two nodes.
# LATENCY ("1 5"): with REDIS, also two nodes reaching Redis through the harness's relay
# (tests/harness/src/bin/relay.rs), which adds that many milliseconds to every round trip
# (half each way); "" skips it. BASE (1): 0 skips the single-server loops and the memory
# figures (for a run of the Redis rows alone). RESULTS, REPORT_MD, REPORT_SVG: where the raw
# figures and the report go (examples/bench/results.jsonl, REPORT.md, bench.svg).
# POSTGRES (1): also one and two nodes on one PostgreSQL (Debian's postgresql, started by the
# harness's postgres_server; skipped without): the same loops and burst (PG_BURST_K, as
# REDIS_BURST_K), with the statements per event counted in pg_stat_statements.
# SCALE (1): idle memory by variant and knob (SCALE_SOCKETS, 15000, capped by `ulimit -Hn`)
# and reconnect storms (STORM_SIZES, "5000 15000"; e.g. STORM_SIZES=2000 for a quick run),
# SCALE_REPS (3) repetitions.
# USERS (1): "log out everywhere" timed (users_bench). CHAOS (1): the chaos run, CHAOS_SECS
# (120) of faults a database, seed CHAOS_SEED (25). BASELINE (examples/bench/baseline.jsonl):
# an earlier run's results, shown beside this one's. README_OUT (README.md): the README whose
# headline is rewritten from this run ("" leaves it alone).
# Every figure of the report comes from RESULTS: the profiles, the chaos run and the relay's
# PING times are appended to it as they are measured.
# Needs: cargo, node + npm (the Node stack is installed from the npm registry); taskset and
# valgrind are used when present. About 45 minutes with the defaults (SCALE=0 CHAOS=0: 15).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH="$ROOT/examples/bench"
cd "$ROOT"

REPS=${REPS:-3}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CLIENTS=${CLIENTS:-50}
BURST_SOCKETS=${BURST_SOCKETS:-20}
BURST_K=${BURST_K:-200}
LATENCY_BURST_K=${LATENCY_BURST_K:-25}
IDLE_SOCKETS=${IDLE_SOCKETS:-10000}
MEM_REPS=${MEM_REPS:-1}
PROFILE=${PROFILE:-1}
PROFILE_DURATION=${PROFILE_DURATION:-5}
REDIS=${REDIS:-1}
REDIS_BURST_K=${REDIS_BURST_K:-225}
POSTGRES=${POSTGRES:-1}
PG_BURST_K=${PG_BURST_K:-$REDIS_BURST_K}
SCALE=${SCALE:-1}
LATENCY=${LATENCY-1 5}
BASE=${BASE:-1}
SCALE_SOCKETS=${SCALE_SOCKETS:-15000}
SCALE_REPS=${SCALE_REPS:-3}
STORM_SIZES=${STORM_SIZES:-5000 15000}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

log "building (release)"
cargo build --release -p session-bench
if [ "$REDIS" = 1 ] && [ -n "$LATENCY" ]; then
    cargo build --release -p session-harness --bin relay
fi
if [ "$POSTGRES" = 1 ]; then
    cargo build --release -p session-harness --bin postgres_server
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELAY="$TARGET_DIR/release/relay"
PG_SERVER="$TARGET_DIR/release/postgres_server"
SERVER="$TARGET_DIR/release/bench_server"
LOADGEN="$TARGET_DIR/release/loadgen"
REPORT="$TARGET_DIR/release/bench_report"

log "installing the Node stack from the npm registry"
(cd "$BENCH/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# 10 000 sockets need as many descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)" || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_SOCKETS + 1000)) ]; then
    log "ulimit -n is $(ulimit -n): lowering IDLE_SOCKETS to fit"
    IDLE_SOCKETS=$(( $(ulimit -n) - 1000 ))
fi

PIN_SERVER=()
PIN_LOADGEN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_LOADGEN=(taskset -c "$LOADGEN_CPU")
else
    log "not pinning (no taskset or fewer than 2 cores): server and load generator share cores"
fi

WORK=$(mktemp -d)
RESULTS=${RESULTS:-$BENCH/results.jsonl}
: > "$RESULTS"
SERVER_PID=
NODE_PIDS=()
REDIS_PID=
RELAY_PID=
cleanup() {
    if [ -n "$RELAY_PID" ]; then kill "$RELAY_PID" 2>/dev/null || true; fi
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Load conditions, so the figures can be read against them.
printf '{"kind":"meta","started":"%s","nproc":%s,"cpu":"%s","loadavg":"%s","rustc":"%s","node":"%s","commit":"%s","pinned":%s,"reps":%s,"duration_s":%s,"clients":%s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //; s/"//g')" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(rustc --version)" "$(node --version)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$([ ${#PIN_SERVER[@]} -gt 0 ] && echo true || echo false)" "$REPS" "$DURATION" "$CLIENTS" \
    >> "$RESULTS"

# start_server CMD...: starts a server pinned to SERVER_CPU, waits for its port; sets
# SERVER_PID and URL.
start_server() {
    # A file of its own per server: several nodes run at once.
    local out="$WORK/server.$RANDOM$RANDOM.out"
    SERVER_ERR="$out.err"
    : > "$out"
    "${PIN_SERVER[@]}" "$@" > "$out" 2> "$SERVER_ERR" &
    SERVER_PID=$!
    local port=
    for _ in $(seq 200); do
        port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$out")
        [ -n "$port" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    if [ -z "$port" ]; then
        log "server did not start: $*"
        cat "$SERVER_ERR" >&2
        return 1
    fi
    URL="http://127.0.0.1:$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    # Graceful shutdown may wait on a lingering connection: give it 10 s, then end it.
    for _ in $(seq 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# loadgen LABEL ARGS...: one measurement; a failure is logged and the run goes on.
loadgen() {
    local label=$1
    shift
    if ! "${PIN_LOADGEN[@]}" "$LOADGEN" --url "$URL" --pid "$SERVER_PID" --label "$label" \
        --out "$RESULTS" "$@" > "$WORK/loadgen.out" 2> "$WORK/loadgen.err"; then
        log "FAILED: $label $*"
        cat "$WORK/loadgen.err" >&2
    fi
}

rust_server() { # VARIANT STORE [more args]
    local variant=$1 store=$2
    shift 2
    start_server "$SERVER" --variant "$variant" --store "$store" "$@"
}

node_server() {
    start_server node "$BENCH/node/server.js" "$@"
}

# Every repetition runs every configuration, interleaved, so that a change in the machine's
# load hits all of them alike.
CONFIGS=(plain/memory manual/memory autosave/memory manual/moka autosave/moka manual/sqlite autosave/sqlite node/memory)

if [ "$BASE" = 1 ]; then
for rep in $(seq "$REPS"); do
    log "closed loop, repetition $rep/$REPS (${#CONFIGS[@]} servers, ${DURATION}s each event)"
    for config in "${CONFIGS[@]}"; do
        variant=${config%/*}
        store=${config#*/}
        if [ "$variant" = node ]; then node_server; else rust_server "$variant" "$store"; fi
        stats=()
        [ "$variant" != node ] && stats=(--stats)
        [ "$variant" = plain ] && stats+=(--no-count-check)
        loadgen "$config" --mode loop --event incr --clients "$CLIENTS" \
            --duration "$DURATION" --warmup "$WARMUP" "${stats[@]}"
        loadgen "$config" --mode loop --event whoami --clients "$CLIENTS" \
            --duration "$DURATION" --warmup "$WARMUP" "${stats[@]}"
        stop_server
    done

    log "burst, repetition $rep/$REPS ($BURST_SOCKETS sockets x $BURST_K incr, one session)"
    for config in manual/memory autosave/memory manual/sqlite autosave/sqlite node/memory; do
        variant=${config%/*}
        store=${config#*/}
        if [ "$variant" = node ]; then node_server; else rust_server "$variant" "$store"; fi
        stats=()
        [ "$variant" != node ] && stats=(--stats)
        loadgen "$config" --mode burst --event incr --clients "$BURST_SOCKETS" --sessions 1 \
            --burst "$BURST_K" "${stats[@]}"
        stop_server
    done
    for variant in manual autosave; do
        rust_server "$variant" memory --store-latency-us 2000
        loadgen "$variant/memory+2ms" --mode burst --event incr --clients "$BURST_SOCKETS" \
            --sessions 1 --burst "$LATENCY_BURST_K" --stats
        stop_server
    done
done

for rep in $(seq "$MEM_REPS"); do
    log "memory, repetition $rep/$MEM_REPS ($IDLE_SOCKETS idle sockets)"
    rust_server plain memory
    loadgen "rust/no-session" --mode idle --clients "$IDLE_SOCKETS"
    stop_server
    rust_server autosave memory
    loadgen "rust/session" --mode idle --clients "$IDLE_SOCKETS"
    stop_server
    # Without and with sessions that expire: one expiry timer per session (none expires during
    # the hold); the difference is what the expiry machinery costs. The hold spans a heartbeat
    # round (25 s), so the idle CPU counts it.
    rust_server autosave memory
    loadgen "expiry/off" --mode idle --clients "$IDLE_SOCKETS" --hold 60
    stop_server
    rust_server autosave memory --idle-secs 3600
    loadgen "expiry/on" --mode idle --clients "$IDLE_SOCKETS" --hold 60
    stop_server
    node_server --no-session
    loadgen "node/no-session" --mode idle --clients "$IDLE_SOCKETS"
    stop_server
    node_server
    loadgen "node/session" --mode idle --clients "$IDLE_SOCKETS"
    stop_server
done
fi

# Several nodes on one database. Each node is a server process on the server core; the load
# generator spreads its sockets over the nodes (`--url A,B`) and sums their CPU (`--pid P,Q`).

# start_nodes N CMD...: N servers of CMD; sets NODE_PIDS, URLS and PIDS.
start_nodes() {
    local n=$1
    shift
    NODE_PIDS=()
    local urls=() i
    for i in $(seq "$n"); do
        start_server "$@" || return 1
        NODE_PIDS+=("$SERVER_PID")
        urls+=("$URL")
        SERVER_PID=
    done
    URLS=$(IFS=,; echo "${urls[*]}")
    PIDS=$(IFS=,; echo "${NODE_PIDS[*]}")
}
stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do SERVER_PID=$pid stop_server; done
    NODE_PIDS=()
}
# start_variant_nodes N VARIANT STORE: N nodes of the Node stack (VARIANT `node`, its database
# from the environment) or of bench_server's VARIANT on STORE.
start_variant_nodes() {
    if [ "$2" = node ]; then
        start_nodes "$1" node "$BENCH/node/server.js"
    else
        start_nodes "$1" "$SERVER" --variant "$2" --store "$3"
    fi
}
# loadgen over every node: it takes comma-separated URLs and pids.
nodes_loadgen() { URL=$URLS SERVER_PID=$PIDS loadgen "$@"; }

if [ "$REDIS" = 1 ] && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        > "$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

    stop_redis_nodes() {
        stop_nodes
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
    }
    # redis_rows TAG NODES VARIANT: VARIANT on NODES nodes, closed loops of `incr` and
    # `whoami` (labels redis$TAG/...), their round trips (redis-rt$TAG/...) and, on two nodes,
    # the cross-node burst.
    redis_rows() {
        local tag=$1 nodes=$2 variant=$3 event
        start_variant_nodes "$nodes" "$variant" redis || return 0
        for event in incr whoami; do
            nodes_loadgen "redis$tag/$variant/${nodes}n" --mode loop --event "$event" \
                --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP"
            nodes_loadgen "redis-rt$tag/$variant/${nodes}n" --mode loop --event "$event" \
                --clients 10 --duration 1 --warmup 0.2 --redis-monitor "$REDIS_PORT"
        done
        if [ "$nodes" = 2 ]; then
            nodes_loadgen "redis$tag/$variant/${nodes}n" --mode burst --event incr \
                --clients 2 --sessions 1 --burst "$REDIS_BURST_K"
        fi
        stop_redis_nodes
    }
    REDIS_CONFIGS=(manual autosave node)
    for rep in $(seq "$REPS"); do
        for nodes in 1 2; do
            log "redis, repetition $rep/$REPS, $nodes node(s): ${REDIS_CONFIGS[*]}"
            for variant in "${REDIS_CONFIGS[@]}"; do
                redis_rows "" "$nodes" "$variant"
            done
        done
        # Keep-alive: `whoami` with sessions that expire after 4 s idle, so every session is
        # touched about once a second (a lock, a reload and a save each time): round trips
        # per readonly event with touches on, beside the row above without.
        start_nodes 1 "$SERVER" --variant autosave --store redis --idle-secs 4 || continue
        nodes_loadgen "redis-rt/autosave+touch/1n" --mode loop --event whoami \
            --clients "$CLIENTS" --duration "$DURATION" --redis-monitor "$REDIS_PORT"
        stop_redis_nodes
    done
    # relay_ping PORT [ADDED_MS]: the median PING round trip through PORT (one client), as a
    # results line: what the relay itself adds, for the latency rows.
    relay_ping() {
        command -v redis-benchmark >/dev/null || return 0
        local ms
        ms=$(redis-benchmark -p "$1" -t ping -n 500 -c 1 --csv 2>/dev/null |
            awk -F'"' '/PING_MBULK/ { print $10 }')
        [ -n "$ms" ] || return 0
        printf '{"kind":"relay_ping"%s,"ms":%s}\n' "${2:+,\"added_ms\":$2}" "$ms" >> "$RESULTS"
    }
    # Latency between the nodes and Redis: the relay adds LATENCY ms to every round trip (and
    # 0 ms once, for what the relay itself costs). The round trips are counted at Redis
    # itself, past the relay.
    if [ -n "$LATENCY" ]; then
    for rep in $(seq "$REPS"); do
        relay_ping "$REDIS_PORT"
        for ms in 0 $LATENCY; do
            "$RELAY" "$REDIS_PORT" $((ms * 500)) > "$WORK/relay.out" 2>&1 &
            RELAY_PID=$!
            relay_port=
            for _ in $(seq 100); do
                relay_port=$(sed -n 's/^listening on \([0-9][0-9]*\)$/\1/p' "$WORK/relay.out")
                [ -n "$relay_port" ] && break
                sleep 0.05
            done
            relay_ping "$relay_port" "$ms"
            if [ "$ms" != 0 ]; then
                log "redis +${ms} ms per round trip, repetition $rep/$REPS: autosave node"
                export REDIS_URL="redis://127.0.0.1:$relay_port"
                for variant in autosave node; do
                    redis_rows "+${ms}ms" 2 "$variant"
                done
            fi
            kill "$RELAY_PID" 2>/dev/null || true
            wait "$RELAY_PID" 2>/dev/null || true
            RELAY_PID=
        done
    done
    fi
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
    unset REDIS_URL
elif [ "$REDIS" = 1 ]; then
    log "redis-server not found: no Redis figures"
fi

# Several nodes on one PostgreSQL, a server of the harness's own: postgres_server runs it until
# its stdin closes, which a descriptor of this script holds open (closed at the latest when the
# script ends, however it ends).
if [ "$POSTGRES" = 1 ]; then
    mkfifo "$WORK/pg.in"
    "$PG_SERVER" < "$WORK/pg.in" > "$WORK/pg.out" 2> "$WORK/pg.err" &
    PG_PID=$!
    exec 4> "$WORK/pg.in"
    DATABASE_URL=
    for _ in $(seq 600); do
        DATABASE_URL=$(sed -n 's/^url //p' "$WORK/pg.out")
        [ -n "$DATABASE_URL" ] && break
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [ -n "$DATABASE_URL" ]; then
        export DATABASE_URL
        # pg_rows NODES VARIANT: closed loops of `incr` and `whoami` (labels pg/...), the
        # statements per event counted in the same run, and, on two nodes, the cross-node burst.
        pg_rows() {
            local nodes=$1 variant=$2 event
            start_variant_nodes "$nodes" "$variant" postgres || return 0
            for event in incr whoami; do
                nodes_loadgen "pg/$variant/${nodes}n" --mode loop --event "$event" \
                    --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
                    --pg-statements "$DATABASE_URL"
            done
            if [ "$nodes" = 2 ]; then
                nodes_loadgen "pg/$variant/${nodes}n" --mode burst --event incr \
                    --clients 2 --sessions 1 --burst "$PG_BURST_K" --pg-statements "$DATABASE_URL"
            fi
            stop_nodes
        }
        for rep in $(seq "$REPS"); do
            for nodes in 1 2; do
                log "postgres, repetition $rep/$REPS, $nodes node(s): manual autosave node"
                for variant in manual autosave node; do
                    pg_rows "$nodes" "$variant"
                done
            done
        done
        unset DATABASE_URL
    else
        log "no PostgreSQL server: no PostgreSQL figures"
        cat "$WORK/pg.err" >&2
    fi
    exec 4>&-
    wait "$PG_PID" 2>/dev/null || true
fi

# Scale (issue 10): bytes per idle socket by variant and knob, and reconnect storms. One
# server process holds at most `ulimit -Hn` sockets (20 000 on the reference machine, so
# SCALE_SOCKETS defaults to 15 000). Beyond that, run several servers and spread the load
# generators over loopback source addresses (127.0.0.x): `loadgen --url A,B --pid P,Q` sums
# the servers' RSS.
if [ "$SCALE" = 1 ]; then
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((SCALE_SOCKETS + 1000)) ]; then
        log "ulimit -n is $(ulimit -n): lowering SCALE_SOCKETS to fit"
        SCALE_SOCKETS=$(( $(ulimit -n) - 1000 ))
    fi
    # The settings the demo uses (see examples/login_logout.rs): the handshake's head copied
    # out of hyper's buffer, a 512-byte websocket read buffer.
    BEST=(--own-head --ws-read-buffer 512)
    # label | server command (bench_server flags, or `node ...`) | environment
    SCALE_IDLE=(
        "bare|$SERVER --variant plain --bare|"
        "bare+best|$SERVER --variant plain --bare ${BEST[*]}|"
        "plain|$SERVER --variant plain|"
        "session|$SERVER --variant autosave|"
        "session+max-buffer-128|$SERVER --variant autosave --max-buffer-size 128|"
        "session+ws-read-512|$SERVER --variant autosave --ws-read-buffer 512|"
        "session+own-head|$SERVER --variant autosave --own-head|"
        "session+best|$SERVER --variant autosave ${BEST[*]}|"
        "session+best+arena1|$SERVER --variant autosave ${BEST[*]}|MALLOC_ARENA_MAX=1"
        "session+best+mimalloc|${SERVER}_mimalloc --variant autosave ${BEST[*]}|"
        "session+best+jemalloc|${SERVER}_jemalloc --variant autosave ${BEST[*]}|"
        "node/no-session|node $BENCH/node/server.js --no-session|"
        "node/session|node $BENCH/node/server.js|"
    )
    SCALE_STORM=(
        "bare|$SERVER --variant plain --bare ${BEST[*]}|"
        "session|$SERVER --variant autosave ${BEST[*]}|"
        "session+backlog-4096|$SERVER --variant autosave ${BEST[*]} --backlog 4096|"
        "session/defaults|$SERVER --variant autosave|"
        "node/session|node $BENCH/node/server.js|"
    )
    scale_run() { # ENTRY MODE CLIENTS [loadgen args]
        local label cmd envs
        IFS='|' read -r label cmd envs <<< "$1"
        shift
        local mode=$1 clients=$2
        shift 2
        # `env` execs the server: its pid is the one measured. The command is words on purpose.
        # shellcheck disable=SC2086
        start_server env $envs $cmd || return 0
        loadgen "scale/$label" --mode "$mode" --clients "$clients" "$@"
        stop_server
    }
    for rep in $(seq "$SCALE_REPS"); do
        log "scale, repetition $rep/$SCALE_REPS: idle memory, $SCALE_SOCKETS sockets x ${#SCALE_IDLE[@]} servers"
        for entry in "${SCALE_IDLE[@]}"; do
            scale_run "$entry" idle "$SCALE_SOCKETS"
        done
        for n in $STORM_SIZES; do
            log "scale, repetition $rep/$SCALE_REPS: reconnect storm of $n sockets x ${#SCALE_STORM[@]} servers"
            for entry in "${SCALE_STORM[@]}"; do
                scale_run "$entry" storm "$n"
            done
        done
        # What the 512-byte websocket read buffer costs: small events in a closed loop.
        for ws in 4096 512; do
            start_server "$SERVER" --variant autosave --own-head --ws-read-buffer "$ws" || continue
            loadgen "scale/ws-read-$ws" --mode loop --event whoami --clients "$CLIENTS" \
                --duration "$DURATION" --warmup "$WARMUP"
            stop_server
        done
    done
fi

# Where the CPU goes: instructions per event under callgrind, counted only while the events run.
PROFILE_ARGS=()
if [ "$PROFILE" = 1 ] && command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
    log "profiling with callgrind (5 servers, ${PROFILE_DURATION}s each)"
    for p in plain:plain:incr autosave:autosave:incr plain-whoami:plain:whoami readonly:autosave:whoami manual:manual:incr; do
        IFS=: read -r name variant event <<< "$p"
        if ! start_server valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$WORK/cg.$name" "$SERVER" --variant "$variant" --store memory --workers 1; then
            continue
        fi
        if "${PIN_LOADGEN[@]}" "$LOADGEN" --url "$URL" --label "$name" --mode loop --event "$event" \
            --clients 10 --duration "$PROFILE_DURATION" --warmup 0.5 --no-count-check \
            --hook-start "callgrind_control -i on $SERVER_PID >/dev/null" \
            --hook-end "callgrind_control -i off $SERVER_PID >/dev/null" \
            --out "$WORK/prof.$name.json" > /dev/null 2> "$WORK/loadgen.err"; then
            stop_server
            callgrind_annotate --inclusive=yes --threshold=100 "$WORK/cg.$name" > "$WORK/cg.$name.txt" 2>/dev/null
            PROFILE_ARGS+=(--profile "$name=$WORK/cg.$name.txt=$WORK/prof.$name.json")
        else
            log "FAILED: profile $name"
            cat "$WORK/loadgen.err" >&2
            stop_server
        fi
    done
elif [ "$PROFILE" = 1 ]; then
    log "valgrind not found: no profile"
fi

# Users: "log out everywhere" of one user's USERS_SESSIONS (100) sessions on two demo processes
# on one Redis and on one PostgreSQL (each skipped without its server), USERS_ROUNDS (20)
# rounds; USERS (1), 0 skips it.
if [ "${USERS:-1}" = 1 ]; then
    log "users: log out everywhere"
    cargo build --release -p session-bench --bin users_bench
    cargo build --release -p session-workspace --example login_logout
    LOGIN_LOGOUT_BIN="$TARGET_DIR/release/examples/login_logout" \
        "$TARGET_DIR/release/users_bench" --rounds "${USERS_ROUNDS:-20}" \
        --sessions "${USERS_SESSIONS:-100}" --out "$RESULTS" \
        || log "users_bench failed; the report goes on without it"
fi

# The chaos run: CHAOS (1) runs `session-chaos` on both databases (each skipped without its
# server) with the release demo, CHAOS_SECS (120) of faults each, seed CHAOS_SEED (25), its
# figures appended to the results; 0 skips it.
if [ "${CHAOS:-1}" = 1 ]; then
    log "chaos run: ${CHAOS_SECS:-120} s of faults a database"
    cargo build --release -p session-chaos
    cargo build --release -p session-workspace --example login_logout
    if ! CHAOS_SECS=${CHAOS_SECS:-120} CHAOS_SEED=${CHAOS_SEED:-25} CHAOS_RESULTS="$RESULTS" \
        LOGIN_LOGOUT_BIN="$TARGET_DIR/release/examples/login_logout" \
        "$TARGET_DIR/release/session-chaos" > "$WORK/chaos.out" 2>&1; then
        log "the chaos run failed or found anomalies; the report says which:"
        tail -n 40 "$WORK/chaos.out" >&2
    fi
fi

# BASELINE (examples/bench/baseline.jsonl, if there): an earlier run's results, set beside
# this one's in "Before and after". README_OUT (README.md): the README whose headline is
# rewritten from this run; "" leaves it alone (e.g. for a partial run).
REPORT_ARGS=()
BASELINE=${BASELINE:-$BENCH/baseline.jsonl}
[ -f "$BASELINE" ] && REPORT_ARGS+=(--baseline "$BASELINE")
README_OUT=${README_OUT-$ROOT/README.md}
[ -n "$README_OUT" ] && REPORT_ARGS+=(--readme "$README_OUT")
log "writing the report"
"$REPORT" --results "$RESULTS" --markdown "${REPORT_MD:-$BENCH/REPORT.md}" \
    --svg "${REPORT_SVG:-$BENCH/bench.svg}" "${PROFILE_ARGS[@]}" "${REPORT_ARGS[@]}"
log "done: examples/bench/REPORT.md, examples/bench/bench.svg, examples/bench/results.jsonl"
