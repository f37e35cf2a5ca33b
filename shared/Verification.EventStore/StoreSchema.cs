namespace Verification.EventStore;

/// <summary>
/// Which statement appends: one event at an expected version, one event new or at any version; several events at an
/// expected version, to a new stream, or at any version (after <see cref="StoreSchema.LockStreams"/>).
/// </summary>
internal enum AppendShape { OneAtVersion, One, ManyAtVersion, ManyNew, Many }

/// <summary>The store's tables and functions. Every statement is idempotent; migration runs under an advisory lock.</summary>
internal static class StoreSchema
{
    public static string Sql(string s) => $$"""
        CREATE SCHEMA IF NOT EXISTS {{s}};

        -- A stream's head: every append moves it (version, last hash) in the same statement that inserts the events,
        -- and the row lock taken there queues the stream's writers, so one statement does an append.
        CREATE TABLE IF NOT EXISTS {{s}}.streams (
            id          text PRIMARY KEY,
            type        text NOT NULL,
            version     bigint NOT NULL DEFAULT 0,
            hash        bytea,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            archived    boolean NOT NULL DEFAULT false
        ) WITH (fillfactor = 70);
        -- Stores from before kept the head only in the events: give their streams rows one, once.
        DO $m$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{{s}}' AND table_name = 'streams' AND column_name = 'hash') THEN
                ALTER TABLE {{s}}.streams ADD COLUMN version bigint NOT NULL DEFAULT 0, ADD COLUMN hash bytea,
                    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
                UPDATE {{s}}.streams s SET version = h.version, hash = h.hash, updated_at = h.recorded_at
                FROM (SELECT DISTINCT ON (stream_id) stream_id, version, hash, recorded_at FROM {{s}}.events ORDER BY stream_id, version DESC) h
                WHERE h.stream_id = s.id;
            END IF;
        END $m$;

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
            SELECT id, type, version, created_at, updated_at, archived FROM {{s}}.streams WHERE version > 0;
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
            sent_at      timestamptz,
            failure      text,
            attempts     int NOT NULL DEFAULT 0,
            retry_at     timestamptz
        );
        CREATE INDEX IF NOT EXISTS outbox_unsent ON {{s}}.outbox (position) WHERE sent_at IS NULL;
        -- A message the relay could not read holds its stream back (order within a stream) until it is tried again, and
        -- says why. Stores from before lack these columns: add them, once.
        DO $m$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{{s}}' AND table_name = 'outbox' AND column_name = 'failure') THEN
                ALTER TABLE {{s}}.outbox ADD COLUMN failure text, ADD COLUMN attempts int NOT NULL DEFAULT 0, ADD COLUMN retry_at timestamptz;
            END IF;
        END $m$;
        CREATE INDEX IF NOT EXISTS outbox_held ON {{s}}.outbox (stream_id, position) WHERE sent_at IS NULL AND retry_at IS NOT NULL;

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
            failure        text,
            failed_position bigint,
            failing_since  timestamptz,
            attempts       int NOT NULL DEFAULT 0,
            PRIMARY KEY (name, generation)
        );
        -- A generation that fails on an event stops before it and says so (the daemon never skips one): why, on which
        -- event, since when, after how many attempts. Stores from before lack these columns: add them, once.
        DO $m$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{{s}}' AND table_name = 'projections' AND column_name = 'failure') THEN
                ALTER TABLE {{s}}.projections ADD COLUMN failure text, ADD COLUMN failed_position bigint, ADD COLUMN failing_since timestamptz,
                    ADD COLUMN attempts int NOT NULL DEFAULT 0;
            END IF;
        END $m$;

        CREATE TABLE IF NOT EXISTS {{s}}.documents (
            projection  text NOT NULL,
            generation  int NOT NULL,
            id          text NOT NULL,
            data        jsonb NOT NULL,
            version     bigint NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, generation, id)
        );

        -- Appends are plain SQL (StoreSchema.Append); this function runs only when an append found nothing to insert
        -- after: a batch whose ids are all stored in this stream already is a repeat (false: insert nothing, and the
        -- caller reads what is stored); one that repeats some ids is refused (VE002); else the stream is archived (VE004)
        -- or the version was wrong (VE001).
        DROP FUNCTION IF EXISTS {{s}}.append_events(text, text, bigint, uuid[], text[], jsonb[], jsonb[]);
        DROP FUNCTION IF EXISTS {{s}}.append_refused(text, bigint, uuid[]);
        CREATE OR REPLACE FUNCTION {{s}}.refuse_append(p_stream text, p_expected bigint, p_ids uuid[])
        RETURNS boolean LANGUAGE plpgsql AS $f$
        BEGIN
            IF EXISTS (SELECT 1 FROM {{s}}.events WHERE id = p_ids[1]) THEN
                IF (SELECT count(*) FROM {{s}}.events WHERE id = ANY(p_ids) AND stream_id = p_stream) = cardinality(p_ids) THEN
                    RETURN false;
                END IF;
                RAISE EXCEPTION 'batch for stream % repeats some event ids but not all', p_stream USING ERRCODE = 'VE002';
            END IF;
            IF (SELECT archived FROM {{s}}.streams WHERE id = p_stream) THEN
                RAISE EXCEPTION 'stream % is archived', p_stream USING ERRCODE = 'VE004';
            END IF;
            RAISE EXCEPTION 'stream % is at version %, not the expected %', p_stream,
                coalesce((SELECT version FROM {{s}}.streams WHERE id = p_stream), 0), p_expected USING ERRCODE = 'VE001';
        END $f$;
        """;

    /// <summary>
    /// Before the appends of a session that has several, or an append of several events: creates their streams' rows if
    /// new (version 0) and locks them, sorted by the caller, so two sessions never wait on each other crosswise. Its own
    /// statement because a statement reads with the snapshot it started with: the append after it must see the head the
    /// lock made it wait for.
    /// </summary>
    public static string LockStreams(string s) => $$"""
        INSERT INTO {{s}}.streams AS s (id, type) SELECT * FROM unnest($1::text[], $2::text[])
        ON CONFLICT (id) DO UPDATE SET version = s.version
        """;

    /// <summary>
    /// <see cref="LockStreams"/> for a session over several streams, and each stream's expected version ($3, the first
    /// append's) and archived flag checked against the row it locked: a session that must fail then fails before any of
    /// its appends takes a position. A stream whose first event id ($4) is stored already is left to its append, which
    /// tells a retry from a conflict. Its result has no rows; the session steps past it.
    /// </summary>
    public static string LockAndCheckStreams(string s) => $$"""
        WITH locked AS (
            INSERT INTO {{s}}.streams AS s (id, type) SELECT * FROM unnest($1::text[], $2::text[])
            ON CONFLICT (id) DO UPDATE SET version = s.version
            RETURNING id, version, archived
        )
        SELECT 1 FROM locked l JOIN unnest($1::text[], $3::bigint[], $4::uuid[]) AS e (id, expected, first_id) ON e.id = l.id
        WHERE CASE WHEN l.archived OR l.version <> e.expected THEN {{s}}.refuse_append(l.id, e.expected, ARRAY[e.first_id]) ELSE false END
        """;

    /// <summary>
    /// One append, one statement. A single event moves the stream's row (insert, or update under its row lock, which
    /// re-reads the newest head after waiting) and inserts the event from what the row returns. Several events chain
    /// their hashes with a recursive query from the head: at an expected version the statement locks the row itself
    /// (FOR UPDATE returns the newest head after waiting); a new stream chains from nothing and then inserts its row,
    /// which waits for a concurrent starter and matches nothing if the stream exists; at any version they follow
    /// <see cref="LockStreams"/>. Either way the expected version (and, where a retry could pass it, the first event id)
    /// is checked before any position is taken. When there is nothing to insert, refuse_append raises the conflict (or
    /// that the stream is archived: an archived stream matches no append), or lets the statement return no rows for a
    /// repeat: the caller then reads what is stored. (A single event with an expected version needs no probe for a
    /// retry: the first try moved the stream past the version the retry expects.) Parameters: stream, stream type,
    /// expected version (null: any), then id, type name, data, metadata: scalars for one event, arrays for several (of
    /// metadata, one value per event or one for them all).
    /// Rows: position, version, and recorded_at, hash when <paramref name="stored"/> (inline projections read them;
    /// reading columns nobody needs costs each append a few microseconds). No PL/pgSQL on the way, and no more plan
    /// than needed.
    /// </summary>
    public static string Append(string s, AppendShape shape, bool stored = true) => shape switch
    {
        // The row must exist at the expected version; the update waits for the stream's writer before it and re-reads.
        AppendShape.OneAtVersion => AppendOne(s, $$"""
            UPDATE {{s}}.streams s SET version = s.version + 1, hash = {{Hash("s.hash", "s.version + 1", "$4", "$5", "$6", "$7")}}, updated_at = now()
            WHERE s.id = $1 AND s.version = $3 AND NOT s.archived
            RETURNING version, hash
            """, stored),
        // A new stream (expected 0) or any version (null): insert the row, or on a concurrent or existing one, move it
        // (null, or a row without events yet).
        AppendShape.One => AppendOne(s, $$"""
            INSERT INTO {{s}}.streams AS s (id, type, version, hash, created_at, updated_at)
            SELECT $1, $2, 1, {{Hash("NULL", "1", "$4", "$5", "$6", "$7")}}, now(), now()
            WHERE $3::bigint = 0 OR ($3 IS NULL AND NOT EXISTS (SELECT 1 FROM {{s}}.events WHERE id = $4))
            ON CONFLICT (id) DO UPDATE SET version = s.version + 1, hash = {{Hash("s.hash", "s.version + 1", "$4", "$5", "$6", "$7")}}, updated_at = now()
            WHERE ($3 IS NULL OR s.version = 0) AND NOT s.archived
            RETURNING version, hash
            """, stored),
        AppendShape.ManyAtVersion => $$"""
            WITH RECURSIVE head AS (
                SELECT version, hash, archived FROM {{s}}.streams WHERE id = $1 FOR UPDATE
            ),
            {{Chain($"SELECT 0, h.version, h.hash, {ChainStart} FROM (SELECT) AS one LEFT JOIN head h ON true WHERE {Admitted(s, "h.version = $3 AND NOT h.archived")}")}},
            {{AdvanceAndInsert(s, stored)}}
            """,
        // The stream's row comes last: a stream that exists (or starts concurrently: the insert waits for it) inserts
        // nothing, and refuse_append then raises the conflict, or lets a repeat return no rows.
        AppendShape.ManyNew => $$"""
            WITH RECURSIVE {{Chain($"SELECT 0, 0::bigint, NULL::bytea, {ChainStart}")}},
            started AS (
                INSERT INTO {{s}}.streams AS s (id, type, version, hash, created_at, updated_at)
                SELECT $1, $2, version, hash, now(), now() FROM chain WHERE n = cardinality($4::uuid[])
                ON CONFLICT (id) DO UPDATE SET version = excluded.version, hash = excluded.hash, updated_at = now()
                WHERE s.version = 0 AND NOT s.archived
                RETURNING version
            ),
            admitted AS (
                SELECT FROM (SELECT) AS one LEFT JOIN started st ON true WHERE {{Admitted(s, "st.version IS NOT NULL")}}
            )
            {{InsertChain(s, "chain, admitted", stored)}}
            """,
        // After LockStreams: the row exists and is locked, and this statement's snapshot sees its newest head.
        _ => $$"""
            WITH RECURSIVE {{Chain($"SELECT 0, version, hash, {ChainStart} FROM {s}.streams WHERE id = $1 AND {Admitted(s, "($3::bigint IS NULL OR version = $3) AND NOT archived")}")}},
            {{AdvanceAndInsert(s, stored)}}
            """,
    };

    private static string AppendOne(string s, string head, bool stored) => $$"""
        WITH head AS (
        {{head}}
        )
        INSERT INTO {{s}}.events (id, stream_id, version, type, data, metadata, recorded_at, hash)
        SELECT $4, $1, h.version, $5, $6, $7, now(), h.hash
        FROM (SELECT) AS one LEFT JOIN head h ON true
        WHERE h.version IS NOT NULL OR {{s}}.refuse_append($1, $3, ARRAY[$4])
        {{Returning(stored)}}
        """;

    /// <summary>
    /// The chain of several events from the row <paramref name="anchor"/> selects (n 0: the head's version and hash,
    /// then <see cref="ChainStart"/>). Metadata ($7) holds one value per event, or one for them all: a session's events
    /// share it unless their schema versions differ, and one value is sent, parsed and written out as text once.
    /// </summary>
    private static string Chain(string anchor) => $$"""
        chain (n, version, hash, at, metadata) AS (
            {{anchor}}
            UNION ALL
            SELECT c.n + 1, c.version + 1,
                   {{Hash("c.hash", "c.version + 1", "($4::uuid[])[c.n + 1]", "($5::text[])[c.n + 1]", "($6::jsonb[])[c.n + 1]",
                       "CASE WHEN cardinality($7::jsonb[]) = 1 THEN c.metadata ELSE (($7::jsonb[])[c.n + 1])::text END", at: "c.at")}}, c.at, c.metadata
            FROM chain c WHERE c.n < cardinality($4::uuid[])
        )
        """;

    /// <summary>
    /// A batch goes on when its head is as <paramref name="expected"/> and its first event id is not stored yet; otherwise
    /// refuse_append raises why, or returns false for a repeat (the statement then inserts nothing).
    /// </summary>
    private static string Admitted(string s, string expected) =>
        $"CASE WHEN {expected} AND NOT EXISTS (SELECT 1 FROM {s}.events WHERE id = ($4::uuid[])[1]) THEN true ELSE {s}.refuse_append($1, $3, $4) END";

    /// <summary>After the chain from a locked head: move the head to the chain's end and insert its events.</summary>
    private static string AdvanceAndInsert(string s, bool stored) => $$"""
        advanced AS (
            UPDATE {{s}}.streams s SET version = last.version, hash = last.hash, updated_at = now()
            FROM (SELECT version, hash FROM chain WHERE n > 0 ORDER BY n DESC LIMIT 1) AS last
            WHERE s.id = $1
        )
        {{InsertChain(s, "chain", stored)}}
        """;

    private static string InsertChain(string s, string from, bool stored) => $$"""
        INSERT INTO {{s}}.events (id, stream_id, version, type, data, metadata, recorded_at, hash)
        SELECT ($4::uuid[])[n], $1, version, ($5::text[])[n], ($6::jsonb[])[n], ($7::jsonb[])[CASE WHEN cardinality($7::jsonb[]) = 1 THEN 1 ELSE n END], now(), hash
        FROM {{from}} WHERE n > 0 ORDER BY n
        {{Returning(stored)}}
        """;

    /// <summary>
    /// A group commit (<see cref="GroupCommit"/>): single-event appends to distinct streams, one per row of the arrays,
    /// after <see cref="LockStreams"/> created and locked their rows in stream order. Each row moves its stream from the
    /// version it expects (0 for a new stream) and inserts its event from what the row returns, in the arrays' order; a
    /// row whose stream is elsewhere, or archived, matches nothing and takes no position (its caller then appends alone
    /// and learns why). Parameters: streams, expected versions, ids, type names, data, metadata. Rows: stream, position,
    /// version, and recorded_at, hash when <paramref name="stored"/>.
    /// </summary>
    public static string AppendGroup(string s, bool stored) => $$"""
        WITH head AS (
            UPDATE {{s}}.streams s SET version = s.version + 1, updated_at = now(),
                hash = {{Hash("s.hash", "s.version + 1", "u.id", "u.type", "u.data", "u.metadata", stream: "u.stream")}}
            FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) WITH ORDINALITY AS u (stream, expected, id, type, data, metadata, n)
            WHERE s.id = u.stream AND s.version = u.expected AND NOT s.archived
            RETURNING u.n, u.stream, u.id, u.type, u.data, u.metadata, s.version, s.hash
        )
        INSERT INTO {{s}}.events (id, stream_id, version, type, data, metadata, recorded_at, hash)
        SELECT id, stream, version, type, data, metadata, now(), hash FROM head ORDER BY n
        RETURNING stream_id, {{Returned(stored)}}
        """;

    /// <summary>One outbox message of a session, after its appends; a retry of the same batch inserts nothing.</summary>
    public static string Publish(string s) =>
        $"INSERT INTO {s}.outbox (message_id, stream_id, message_type, message, headers) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) ON CONFLICT (message_id) DO NOTHING";

    /// <summary>
    /// The outbox messages of a group commit, each kept only if the event it follows ($6) is stored: the messages of an
    /// append the group did not store come with that append when it runs alone.
    /// </summary>
    public static string PublishGroup(string s) => $$"""
        INSERT INTO {{s}}.outbox (message_id, stream_id, message_type, message, headers)
        SELECT u.message_id, u.stream_id, u.type, u.message, u.headers
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::uuid[]) WITH ORDINALITY AS u (message_id, stream_id, type, message, headers, event_id, n)
        WHERE EXISTS (SELECT 1 FROM {{s}}.events e WHERE e.id = u.event_id)
        ORDER BY u.n
        ON CONFLICT (message_id) DO NOTHING
        """;

    private static string Returning(bool stored) => "RETURNING " + Returned(stored);

    private static string Returned(bool stored) => stored ? "position, version, recorded_at, hash" : "position, version";

    /// <summary>
    /// The chain link, over the canonical bytes documented in the README: fields joined by LF, jsonb in its text form.
    /// Joined with || and casts resolved when planned (concat_ws looked up each field's output function per call, and
    /// would skip a null field where || makes the hash null and the insert fail).
    /// </summary>
    private static string Hash(string previous, string version, string id, string type, string data, string metadata, string stream = "$1", string at = RecordedAt) =>
        $"sha256(coalesce({previous}, ''::bytea) || convert_to({stream} || E'\\n' || ({version})::text || E'\\n' || ({id})::text || E'\\n' || {type} || E'\\n' || " +
        $"{at} || E'\\n' || ({data})::text || E'\\n' || ({metadata})::text, 'UTF8'))";

    /// <summary>The recorded time as the link writes it (now() is the transaction's start, the same for every row).</summary>
    private const string RecordedAt = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

    /// <summary>What a chain's links share, worked out once: the recorded time as the link writes it, and the first metadata as text.</summary>
    private const string ChainStart = RecordedAt + ", (($7::jsonb[])[1])::text";

    /// <summary>Grants for the service's own login: read and insert events, never change them.</summary>
    public static string Grants(string s, string role) => $$"""
        GRANT USAGE ON SCHEMA {{s}} TO {{role}};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {{s}} TO {{role}};
        REVOKE UPDATE, DELETE, TRUNCATE ON {{s}}.events FROM {{role}};
        GRANT SELECT, INSERT ON {{s}}.events TO {{role}};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {{s}} TO {{role}};
        """;
}
