namespace Verification.EventStore;

/// <summary>The store's tables and functions. Every statement is idempotent; migration runs under an advisory lock.</summary>
internal static class StoreSchema
{
    public static string Sql(string s) => $$"""
        CREATE SCHEMA IF NOT EXISTS {{s}};

        -- Written once per stream; its version and last change come from the events themselves (stream_heads).
        CREATE TABLE IF NOT EXISTS {{s}}.streams (
            id          text PRIMARY KEY,
            type        text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            archived    boolean NOT NULL DEFAULT false
        );
        -- Stores made before the stream_heads view kept a version on this row; it now comes from the events alone.
        ALTER TABLE {{s}}.streams DROP COLUMN IF EXISTS version, DROP COLUMN IF EXISTS updated_at;

        CREATE TABLE IF NOT EXISTS {{s}}.events (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
            id              uuid NOT NULL UNIQUE,
            stream_id       text NOT NULL,
            version         bigint NOT NULL,
            type            text NOT NULL,
            data            jsonb NOT NULL,
            metadata        jsonb NOT NULL,
            recorded_at     timestamptz NOT NULL,
            hash            bytea NOT NULL,
            UNIQUE (stream_id, version)
        );
        CREATE INDEX IF NOT EXISTS events_commit_order ON {{s}}.events (transaction_id, position);

        CREATE OR REPLACE VIEW {{s}}.stream_heads AS
            SELECT s.id, s.type, h.version, s.created_at, h.recorded_at AS updated_at, s.archived
            FROM {{s}}.streams s
            CROSS JOIN LATERAL (SELECT e.version, e.recorded_at FROM {{s}}.events e WHERE e.stream_id = s.id ORDER BY e.version DESC LIMIT 1) h;
        -- recorded_at grows with position: a BRIN index serves time ranges at almost no cost per insert.
        CREATE INDEX IF NOT EXISTS events_recorded_at ON {{s}}.events USING brin (recorded_at);

        -- The log is append-only: the database itself refuses to change or remove an event.
        CREATE OR REPLACE FUNCTION {{s}}.refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % refused on %.events', TG_OP, TG_TABLE_SCHEMA USING ERRCODE = 'VE003';
        END $f$;
        DROP TRIGGER IF EXISTS events_append_only ON {{s}}.events;
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {{s}}.events FOR EACH ROW EXECUTE FUNCTION {{s}}.refuse_event_change();
        DROP TRIGGER IF EXISTS events_no_truncate ON {{s}}.events;
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {{s}}.events FOR EACH STATEMENT EXECUTE FUNCTION {{s}}.refuse_event_change();

        CREATE TABLE IF NOT EXISTS {{s}}.outbox (
            position     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            message_id   uuid NOT NULL UNIQUE,
            stream_id    text,
            message_type text NOT NULL,
            message      jsonb NOT NULL,
            headers      jsonb NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            sent_at      timestamptz
        );
        CREATE INDEX IF NOT EXISTS outbox_unsent ON {{s}}.outbox (position) WHERE sent_at IS NULL;

        CREATE TABLE IF NOT EXISTS {{s}}.inbox (
            consumer     text NOT NULL,
            message_id   uuid NOT NULL,
            processed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, message_id)
        );

        CREATE TABLE IF NOT EXISTS {{s}}.idempotency (
            scope        text NOT NULL,
            key          text NOT NULL,
            request_hash bytea NOT NULL,
            response     jsonb,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key)
        );

        CREATE TABLE IF NOT EXISTS {{s}}.projections (
            name           text NOT NULL,
            generation     int NOT NULL,
            live           boolean NOT NULL,
            last_xid       xid8 NOT NULL DEFAULT '0'::xid8,
            last_position  bigint NOT NULL DEFAULT 0,
            processed      bigint NOT NULL DEFAULT 0,
            updated_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, generation)
        );

        CREATE TABLE IF NOT EXISTS {{s}}.documents (
            projection  text NOT NULL,
            generation  int NOT NULL,
            id          text NOT NULL,
            data        jsonb NOT NULL,
            version     bigint NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, generation, id)
        );

        -- One round trip per append: the expected version is checked (under the stream's row lock)
        -- before any sequence number is taken, so a losing writer leaves no gap in the positions.
        CREATE OR REPLACE FUNCTION {{s}}.append_events(
            p_stream text, p_stream_type text, p_expected bigint,
            p_ids uuid[], p_types text[], p_data jsonb[], p_metadata jsonb[])
        RETURNS TABLE (o_position bigint, o_version bigint, o_recorded_at timestamptz, o_hash bytea, o_duplicate boolean)
        LANGUAGE plpgsql AS $f$
        DECLARE
            v_version bigint;
            v_hash bytea;
            v_now timestamptz := now();
            v_stamp text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
            v_existing int;
            v_versions bigint[] := '{}';
            v_hashes bytea[] := '{}';
        BEGIN
            -- A retried batch repeats its first event id. One equality probe: PL/pgSQL caches generic plans, and a generic
            -- plan for "id = ANY(p_ids)" on a table not yet analyzed scanned the whole log per append. A batch that
            -- repeats only later ids fails on the unique index instead (23505), with nothing written.
            IF EXISTS (SELECT 1 FROM {{s}}.events WHERE id = p_ids[1]) THEN
                SELECT count(*) INTO v_existing FROM {{s}}.events WHERE id = ANY(p_ids);
                IF v_existing = cardinality(p_ids)
                   AND NOT EXISTS (SELECT 1 FROM {{s}}.events WHERE id = ANY(p_ids) AND stream_id <> p_stream) THEN
                    RETURN QUERY SELECT e.position, e.version, e.recorded_at, e.hash, true
                                 FROM {{s}}.events e WHERE e.id = ANY(p_ids) ORDER BY e.version;
                    RETURN;
                END IF;
                RAISE EXCEPTION 'batch for stream % repeats some event ids but not all', p_stream USING ERRCODE = 'VE002';
            END IF;

            -- Writers of one stream queue on an advisory lock (memory only: no row write, no page contention);
            -- under it the head is read and the expected version checked before any sequence number is taken.
            PERFORM pg_advisory_xact_lock(hashtextextended('{{s}}:' || p_stream, 0));
            SELECT e.version, e.hash INTO v_version, v_hash FROM {{s}}.events e WHERE e.stream_id = p_stream ORDER BY e.version DESC LIMIT 1;
            v_version := coalesce(v_version, 0);
            IF p_expected IS NOT NULL AND v_version <> p_expected THEN
                RAISE EXCEPTION 'stream % is at version %, not the expected %', p_stream, v_version, p_expected USING ERRCODE = 'VE001';
            END IF;
            IF v_version = 0 THEN
                INSERT INTO {{s}}.streams (id, type, created_at) VALUES (p_stream, p_stream_type, v_now) ON CONFLICT (id) DO NOTHING;
            END IF;

            -- The chain is sequential, so hashes are computed in a loop; the rows then go in with one INSERT.
            FOR i IN 1 .. cardinality(p_ids) LOOP
                v_version := v_version + 1;
                -- Canonical bytes (documented in the README): fields joined by LF, jsonb in PostgreSQL's text form.
                v_hash := sha256(coalesce(v_hash, ''::bytea) || convert_to(
                    p_stream || E'\n' || v_version::text || E'\n' || p_ids[i]::text || E'\n' || p_types[i] || E'\n' ||
                    v_stamp || E'\n' || p_data[i]::text || E'\n' || p_metadata[i]::text, 'UTF8'));
                v_versions[i] := v_version;
                v_hashes[i] := v_hash;
            END LOOP;

            RETURN QUERY
            INSERT INTO {{s}}.events (id, stream_id, version, type, data, metadata, recorded_at, hash)
            SELECT u.id, p_stream, u.version, u.type, u.data, u.metadata, v_now, u.hash
            FROM unnest(p_ids, v_versions, p_types, p_data, p_metadata, v_hashes) AS u(id, version, type, data, metadata, hash)
            ORDER BY u.version
            RETURNING position, version, recorded_at, hash, false;

        END $f$;
        """;

    /// <summary>Grants for the service's own login: read and insert events, never change them.</summary>
    public static string Grants(string s, string role) => $$"""
        GRANT USAGE ON SCHEMA {{s}} TO {{role}};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {{s}} TO {{role}};
        REVOKE UPDATE, DELETE, TRUNCATE ON {{s}}.events FROM {{role}};
        GRANT SELECT, INSERT ON {{s}}.events TO {{role}};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {{s}} TO {{role}};
        """;
}
