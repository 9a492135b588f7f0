-- The leases of PostgresSessions, beside tower-sessions-sqlx-store's records
-- ("tower_sessions"."session": id text, data bytea = MessagePack of the Record, expiry_date).
-- Run at every start, under an advisory lock (concurrent CREATE OR REPLACE of one function
-- fails), so a new version of these functions replaces the old one.

-- One row per session being written: the holder's random token and when its lease lapses.
-- UNLOGGED: a lease is worth nothing after a crash (its holders' connections are gone), and
-- writing it skips the WAL.
CREATE UNLOGGED TABLE IF NOT EXISTS "tower_sessions"."session_lease" (
    id text PRIMARY KEY NOT NULL,
    token text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- A waiter refused the lease adds a random tag of its own to `wakes`: the release notifies
-- each tag (channel "tower_sessions_lease"), so waiters are woken by the release instead of
-- asking again and again. Tags, not session ids: any role of the database may LISTEN.
ALTER TABLE "tower_sessions"."session_lease"
    ADD COLUMN IF NOT EXISTS wakes text[] NOT NULL DEFAULT '{}';

-- A session's turn: the node waiting longest for its lease, since when, and when the turn
-- lapses (its node stopped asking). At most one row a session; removed when that node takes
-- the lease, and lapsed ones by the cleanup.
CREATE UNLOGGED TABLE IF NOT EXISTS "tower_sessions"."session_turn" (
    id text PRIMARY KEY NOT NULL,
    node text NOT NULL,
    since timestamptz NOT NULL,
    lapses_at timestamptz NOT NULL
);

-- Takes the lease of one session for p_token, for p_ms milliseconds, and reads its record, in
-- one call; and takes turns with the other nodes waiting for it.
--
-- Invariant: at most one token holds a session's lease, and for no longer than its lifetime
-- unless its holder renews it. A lease that lapsed is free: the next taker overwrites its row.
-- The taker that gets the lease reads the record after taking it (each statement of a
-- plpgsql function in READ COMMITTED sees what committed before it started), so it sees the
-- last holder's write: that write and its release committed together.
--
-- Turns (as on Redis, `redis/scripts/acquire.lua`): a node's writers queue in the node and ask
-- one at a time, so the holder's node would hand the lease to its own next writer nearly
-- every time. The first node refused records itself in "session_turn"; once it has waited
-- p_patience_ms, no other node takes the lease until it has (or until it stops asking and its
-- turn lapses, p_turn_ms after its last ask).
--
-- Returns taken = true and the record (NULL when there is none, or it expired), or
-- taken = false and how many milliseconds to wait at most before asking again (the release
-- notifies p_wake before that if the lease is held).
CREATE OR REPLACE FUNCTION "tower_sessions"."session_acquire"(
    p_id text, p_token text, p_ms bigint, p_node text, p_wake text, p_patience_ms bigint,
    p_turn_ms bigint,
    OUT taken boolean, OUT wait_ms bigint, OUT data bytea)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_node text;
    v_since timestamptz;
    v_due_ms bigint;
BEGIN
    SELECT t.node, t.since INTO v_node, v_since FROM "tower_sessions"."session_turn" t
    WHERE t.id = p_id AND t.lapses_at > v_now;
    taken := false;
    IF v_node IS NULL OR v_node = p_node
        OR v_now - v_since < p_patience_ms * interval '1 millisecond' THEN
        INSERT INTO "tower_sessions"."session_lease" AS lease (id, token, expires_at, wakes)
        VALUES (p_id, p_token, v_now + p_ms * interval '1 millisecond', '{}')
        ON CONFLICT (id) DO UPDATE
            SET token = excluded.token, expires_at = excluded.expires_at, wakes = '{}'
            WHERE lease.expires_at <= v_now;
        taken := FOUND;
    END IF;
    IF taken THEN
        IF v_node = p_node THEN
            DELETE FROM "tower_sessions"."session_turn" WHERE id = p_id AND node = p_node;
        END IF;
        wait_ms := 0;
        SELECT s.data INTO data FROM "tower_sessions"."session" s
        WHERE s.id = p_id AND s.expiry_date > v_now;
        RETURN;
    END IF;

    UPDATE "tower_sessions"."session_lease" lease
    SET wakes = CASE WHEN p_wake = ANY(lease.wakes) THEN lease.wakes
                     ELSE lease.wakes || p_wake END
    WHERE lease.id = p_id AND lease.expires_at > v_now
    RETURNING greatest(1, ceil(extract(epoch FROM lease.expires_at - v_now) * 1000))::bigint
    INTO wait_ms;
    -- Free (released or lapsed since), but another node's turn: ask again at once.
    wait_ms := coalesce(wait_ms, 1);

    IF v_node IS NULL THEN
        INSERT INTO "tower_sessions"."session_turn" AS turn (id, node, since, lapses_at)
        VALUES (p_id, p_node, v_now, v_now + p_turn_ms * interval '1 millisecond')
        ON CONFLICT (id) DO UPDATE
            SET node = excluded.node, since = excluded.since, lapses_at = excluded.lapses_at
            WHERE turn.lapses_at <= v_now;
        IF FOUND THEN
            v_node := p_node;
            v_since := v_now;
        END IF;
    ELSIF v_node = p_node THEN
        UPDATE "tower_sessions"."session_turn"
        SET lapses_at = v_now + p_turn_ms * interval '1 millisecond'
        WHERE id = p_id AND node = p_node;
    END IF;
    v_due_ms := p_patience_ms - (extract(epoch FROM v_now - v_since) * 1000)::bigint;
    IF v_node = p_node AND v_due_ms > 0 THEN
        -- Ours, not yet due: ask again when it is due at the latest. Once due, the release's
        -- notification wakes us (no other node takes the lease meanwhile).
        wait_ms := least(wait_ms, v_due_ms);
    END IF;
END
$$;

-- Writes a session's record for the holder of its lease only, and gives the lease back if
-- asked, in one call.
--
-- p_op: 'save' (p_data, p_expiry), 'delete' or 'none'.
--
-- Invariant (fencing): the record changes only while the writer's own lease holds. The lease
-- row stays locked until the write commits, so no other writer takes the lease in between. A
-- holder whose lease lapsed (paused, cut off) writes nothing and learns it: it never
-- overwrites a later holder's write. A save is an UPDATE: a record deleted meanwhile (a
-- logout) is not brought back. Only the holder releases its lease; a lapsed lease of its own
-- is removed too, so unused rows vanish.
--
-- Returns true when the lease was the writer's (written, released if asked), false when it
-- was not (nothing written).
CREATE OR REPLACE FUNCTION "tower_sessions"."session_write"(
    p_id text, p_token text, p_op text, p_release boolean, p_data bytea, p_expiry timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_live boolean;
    v_wakes text[];
    v_wake text;
BEGIN
    IF p_release THEN
        DELETE FROM "tower_sessions"."session_lease"
        WHERE id = p_id AND token = p_token
        RETURNING expires_at > clock_timestamp(), wakes INTO v_live, v_wakes;
        -- Sent at commit, with the write: a woken waiter reads what was written.
        FOREACH v_wake IN ARRAY coalesce(v_wakes, '{}') LOOP
            PERFORM pg_notify('tower_sessions_lease', v_wake);
        END LOOP;
    ELSE
        SELECT expires_at > clock_timestamp() INTO v_live
        FROM "tower_sessions"."session_lease"
        WHERE id = p_id AND token = p_token
        FOR UPDATE;
    END IF;
    IF v_live IS NOT TRUE THEN
        RETURN false;
    END IF;
    IF p_op = 'save' THEN
        UPDATE "tower_sessions"."session" SET data = p_data, expiry_date = p_expiry
        WHERE id = p_id;
    ELSIF p_op = 'delete' THEN
        DELETE FROM "tower_sessions"."session" WHERE id = p_id;
    END IF;
    RETURN true;
END
$$;

-- The index of users' sessions (PostgresUserIndex): one row per session of a user, keyed by a
-- hash of the user (never the user's id) and stamped with when it was added, in Unix
-- milliseconds. Written only when a session's user changes; a row whose record is gone is
-- never counted (each read checks the records) and is removed by the read that finds it.
CREATE TABLE IF NOT EXISTS "tower_sessions"."session_user" (
    user_key text NOT NULL,
    id text NOT NULL,
    stamp bigint NOT NULL,
    PRIMARY KEY (user_key, id)
);
