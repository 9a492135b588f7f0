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

-- Takes the lease of one session for p_token, for p_ms milliseconds, and reads its record, in
-- one call.
--
-- Invariant: at most one token holds a session's lease, and for no longer than its lifetime
-- unless its holder renews it. A lease that lapsed is free: the next taker overwrites its row.
-- The taker that gets the lease reads the record after taking it (each statement of a
-- plpgsql function in READ COMMITTED sees what committed before it started), so it sees the
-- last holder's write: that write and its release committed together.
--
-- Returns taken = true and the record (NULL when there is none, or it expired), or
-- taken = false and how many milliseconds the lease has left.
CREATE OR REPLACE FUNCTION "tower_sessions"."session_acquire"(
    p_id text, p_token text, p_ms bigint,
    OUT taken boolean, OUT wait_ms bigint, OUT data bytea)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    INSERT INTO "tower_sessions"."session_lease" AS lease (id, token, expires_at)
    VALUES (p_id, p_token, v_now + p_ms * interval '1 millisecond')
    ON CONFLICT (id) DO UPDATE
        SET token = excluded.token, expires_at = excluded.expires_at
        WHERE lease.expires_at <= v_now;
    taken := FOUND;
    IF taken THEN
        wait_ms := 0;
        SELECT s.data INTO data FROM "tower_sessions"."session" s
        WHERE s.id = p_id AND s.expiry_date > v_now;
    ELSE
        SELECT greatest(1, ceil(extract(epoch FROM lease.expires_at - v_now) * 1000))::bigint
        INTO wait_ms FROM "tower_sessions"."session_lease" lease WHERE lease.id = p_id;
        -- Released between the two statements: ask again at once.
        wait_ms := coalesce(wait_ms, 1);
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
BEGIN
    IF p_release THEN
        DELETE FROM "tower_sessions"."session_lease"
        WHERE id = p_id AND token = p_token
        RETURNING expires_at > clock_timestamp() INTO v_live;
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
