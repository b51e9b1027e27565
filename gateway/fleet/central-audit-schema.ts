/**
 * The central audit trail: one schema step (appended to CENTRAL_MIGRATIONS)
 * holding every gateway's shipped rows, in tables named like the local ones
 * (gateway/store/schema.ts) plus `gateway_id` and, where the local table has
 * no integer key of its own, the local `rowid` as `row_id`.
 *
 * Every value a local row's hash covers (store/chain.ts) is kept exactly, so
 * `audit verify --fleet` recomputes the same hashes from PostgreSQL:
 * - `created_at` (and the other times) are TIMESTAMPTZ with millisecond values;
 *   the local text is rebuilt as
 *     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')
 *   which gives SQLite's 'YYYY-MM-DD HH:MM:SS.SSS' (UTC) back byte for byte.
 * - `allowed` is BOOLEAN (the seed's `allowed = false` runs as written); the
 *   record has it as the integer 1 (true) or 0 (false).
 * - REALs are DOUBLE PRECISION: both are IEEE-754 binary64, and the shipper
 *   sends and PostgreSQL 12+ returns the shortest exact decimal, so the
 *   16-hex-digit encoding of the record is unchanged.
 * - Integers are BIGINT (SQLite's are 64-bit); pg returns BIGINT as decimal
 *   text, which is the record's own rendering of an integer.
 * - `detail`, `meta`, `causes` are TEXT, not JSON/JSONB: the exact text is hashed.
 *
 * The watermark is a table, `fleet_shipped`, rather than max(row_id) per
 * gateway: `policy_version` is shared by the fleet and has no row_id, and
 * central retention deletes the rows a max() would be read from. Its row moves
 * in the same transaction as the rows it counts, and keeps the hash of the
 * last shipped row of each chain, so a file that does not continue that chain
 * (another file under the same gateway id, a restored backup) is refused
 * rather than forking it.
 *
 * `fleet_gateway` is the lease of a gateway id on one local file (`file_id`,
 * random per SQLite file): the first file to ship under an id owns it for
 * good; the triggers keep `file_id` from changing and the row from being deleted.
 */
export const CENTRAL_AUDIT_MIGRATION = `
  CREATE TABLE usagelog (
    gateway_id  TEXT NOT NULL,
    row_id      BIGINT NOT NULL,
    id          TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    model       TEXT,
    operation   TEXT NOT NULL,
    meta        TEXT NOT NULL,
    risk_score  DOUBLE PRECISION NOT NULL,
    allowed     BOOLEAN NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    policy_hash TEXT,
    causes      TEXT,
    prev_hash   TEXT,
    hash        TEXT,
    PRIMARY KEY (gateway_id, row_id)
  );
  CREATE INDEX usagelog_created_at ON usagelog (created_at);
  CREATE INDEX usagelog_customer_id ON usagelog (customer_id);
  CREATE INDEX usagelog_gateway_created_at ON usagelog (gateway_id, created_at);
  -- Not UNIQUE: a refused duplicate would stop a gateway's shipping for good.
  CREATE INDEX usagelog_id ON usagelog (id);

  CREATE TABLE usagelog_outcome (
    gateway_id        TEXT NOT NULL,
    row_id            BIGINT NOT NULL,
    log_id            TEXT NOT NULL,
    status            INTEGER,
    duration_ms       DOUBLE PRECISION NOT NULL,
    upstream_ms       DOUBLE PRECISION,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    total_tokens      BIGINT,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    prev_hash         TEXT,
    hash              TEXT,
    PRIMARY KEY (gateway_id, row_id)
  );
  CREATE INDEX usagelog_outcome_created_at ON usagelog_outcome (created_at);
  CREATE INDEX usagelog_outcome_gateway_created_at ON usagelog_outcome (gateway_id, created_at);
  CREATE INDEX usagelog_outcome_log_id ON usagelog_outcome (log_id);

  -- id is the local INTEGER PRIMARY KEY, i.e. the local rowid.
  CREATE TABLE audit_anchor (
    gateway_id         TEXT NOT NULL,
    id                 BIGINT NOT NULL,
    chain              TEXT NOT NULL CHECK (chain IN ('usagelog', 'usagelog_outcome')),
    through_rowid      BIGINT NOT NULL,
    through_hash       TEXT NOT NULL,
    through_created_at TIMESTAMPTZ NOT NULL,
    rows_deleted       BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (gateway_id, id)
  );

  CREATE TABLE audit_event (
    gateway_id TEXT NOT NULL,
    row_id     BIGINT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (gateway_id, row_id)
  );
  CREATE INDEX audit_event_created_at ON audit_event (created_at);

  -- Shared by the fleet: a text is the same version whichever gateway loaded it; the first to ship it says when.
  CREATE TABLE policy_version (
    hash      TEXT PRIMARY KEY,
    loaded_at TIMESTAMPTZ NOT NULL,
    path      TEXT NOT NULL,
    text      TEXT NOT NULL
  );

  -- TG_ARGV[0] = 'pruned': central retention (SET LOCAL govgate.retention = 'on') may delete a prefix.
  CREATE FUNCTION govgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' AND TG_ARGV[0] = 'pruned' AND current_setting('govgate.retention', true) = 'on' THEN
      RETURN OLD;
    END IF;
    RAISE EXCEPTION 'govgate: % is append-only; its rows cannot be %', TG_TABLE_NAME,
      CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'TRUNCATE' THEN 'truncated' ELSE 'deleted' END
      USING ERRCODE = 'insufficient_privilege';
  END
  $$;
  CREATE TRIGGER usagelog_append_only BEFORE UPDATE OR DELETE ON usagelog
    FOR EACH ROW EXECUTE FUNCTION govgate_audit_append_only('pruned');
  CREATE TRIGGER usagelog_outcome_append_only BEFORE UPDATE OR DELETE ON usagelog_outcome
    FOR EACH ROW EXECUTE FUNCTION govgate_audit_append_only('pruned');
  CREATE TRIGGER audit_anchor_append_only BEFORE UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER policy_version_append_only BEFORE UPDATE OR DELETE ON policy_version
    FOR EACH ROW EXECUTE FUNCTION govgate_audit_append_only('kept');
  -- TRUNCATE skips row triggers.
  CREATE TRIGGER usagelog_no_truncate BEFORE TRUNCATE ON usagelog
    FOR EACH STATEMENT EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER usagelog_outcome_no_truncate BEFORE TRUNCATE ON usagelog_outcome
    FOR EACH STATEMENT EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION govgate_audit_append_only('kept');
  CREATE TRIGGER policy_version_no_truncate BEFORE TRUNCATE ON policy_version
    FOR EACH STATEMENT EXECUTE FUNCTION govgate_audit_append_only('kept');

  CREATE TABLE fleet_gateway (
    gateway_id   TEXT PRIMARY KEY,
    file_id      TEXT NOT NULL,
    instance     TEXT NOT NULL,
    claimed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
  );
  CREATE FUNCTION govgate_fleet_gateway_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' OR NEW.file_id IS DISTINCT FROM OLD.file_id OR NEW.gateway_id IS DISTINCT FROM OLD.gateway_id THEN
      RAISE EXCEPTION 'govgate: gateway id % belongs to file %; give the other file a gateway id of its own', OLD.gateway_id, OLD.file_id
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END
  $$;
  CREATE TRIGGER fleet_gateway_fixed BEFORE UPDATE OR DELETE ON fleet_gateway
    FOR EACH ROW EXECUTE FUNCTION govgate_fleet_gateway_fixed();

  -- table_name: usagelog, usagelog_outcome, audit_anchor, audit_event or policy_version;
  -- through_row_id: the local rowid of the last row shipped; through_hash: its hash (chains only).
  CREATE TABLE fleet_shipped (
    gateway_id     TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    through_row_id BIGINT NOT NULL,
    through_hash   TEXT,
    shipped_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, table_name)
  );
`;
