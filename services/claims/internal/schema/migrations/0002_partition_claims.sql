-- Claims move to a table partitioned by hash of member_id, so that one
-- member's claims live together and the table can grow across partitions.
--
-- Idempotency under partitioning. PostgreSQL enforces a unique constraint
-- on a partitioned table only when the constraint includes the partition
-- key, because each partition checks uniqueness on its own. UNIQUE
-- (idempotency_key) on claims would therefore have to become UNIQUE
-- (member_id, idempotency_key), which scopes keys to a member: the same key
-- sent for two different members would create two claims instead of being
-- refused as a reused key. To keep keys unique across all claims, they move
-- to idempotency_keys, an ordinary (unpartitioned) table whose primary key
-- is the key itself. A submission inserts its key there and its claim and
-- outbox event in the same transaction; a concurrent retry of the same key
-- blocks on that primary key and then finds the key taken, so exactly one
-- claim is created. The key row also maps the key to the claim's partition
-- (member_id), and its unique claim_id makes claim ids unique across
-- partitions too, which the partitioned primary key alone could not.

CREATE TABLE idempotency_keys (
    idempotency_key text        PRIMARY KEY,
    -- SHA-256 of the canonical request, to tell a retry from a reuse of
    -- the key for a different request.
    request_hash    bytea       NOT NULL,
    claim_id        uuid        NOT NULL UNIQUE,
    member_id       text        NOT NULL,
    created_at      timestamptz NOT NULL
);

ALTER TABLE claims RENAME TO claims_unpartitioned;
ALTER INDEX claims_pkey RENAME TO claims_unpartitioned_pkey;
ALTER INDEX claims_idempotency_key_key RENAME TO claims_unpartitioned_idempotency_key_key;
ALTER INDEX claims_pended_idx RENAME TO claims_unpartitioned_pended_idx;

CREATE TABLE claims (
    id                   uuid        NOT NULL,
    idempotency_key      text        NOT NULL,
    request_hash         bytea       NOT NULL,
    member_id            text        NOT NULL,
    state                char(2)     NOT NULL,
    household_size       int         NOT NULL CHECK (household_size BETWEEN 1 AND 50),
    monthly_income_cents bigint      NOT NULL CHECK (monthly_income_cents >= 0),
    service_date         date        NOT NULL,
    procedure_code       text        NOT NULL,
    amount_cents         bigint      NOT NULL CHECK (amount_cents > 0),
    status               text        NOT NULL CHECK (status IN ('approved', 'denied', 'pended')),
    status_reason        text        NOT NULL,
    rule_set             text,
    income_limit_cents   bigint,
    created_at           timestamptz NOT NULL,
    decided_at           timestamptz,
    PRIMARY KEY (member_id, id)
) PARTITION BY HASH (member_id);

CREATE TABLE claims_p0 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE claims_p1 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE claims_p2 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE claims_p3 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE claims_p4 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE claims_p5 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE claims_p6 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE claims_p7 PARTITION OF claims FOR VALUES WITH (MODULUS 8, REMAINDER 7);

INSERT INTO idempotency_keys (idempotency_key, request_hash, claim_id, member_id, created_at)
SELECT idempotency_key, request_hash, id, member_id, created_at FROM claims_unpartitioned;

INSERT INTO claims SELECT id, idempotency_key, request_hash, member_id, state, household_size,
    monthly_income_cents, service_date, procedure_code, amount_cents, status, status_reason,
    rule_set, income_limit_cents, created_at, decided_at
FROM claims_unpartitioned;

DROP TABLE claims_unpartitioned;

-- GET /v1/claims/{id} knows only the id.
CREATE INDEX claims_id_idx ON claims (id);
-- Re-adjudication scans pended claims oldest first.
CREATE INDEX claims_pended_idx ON claims (created_at, id) WHERE status = 'pended';
-- Reporting lists claims by state and status, newest first, a page at a time.
CREATE INDEX claims_state_status_created_idx ON claims (state, status, created_at DESC, id DESC);
CREATE INDEX claims_status_created_idx ON claims (status, created_at DESC, id DESC);
CREATE INDEX claims_created_idx ON claims (created_at DESC, id DESC);

-- The relay copies each event's trace context into the stream entry, so
-- that the consumer's work joins the trace of the request that caused it.
ALTER TABLE outbox ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
