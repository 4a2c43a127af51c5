-- Claims and their transactional outbox. A claim and the event announcing
-- its decision are written in one transaction, so an event exists exactly
-- when its claim does; the relay publishes events afterwards.

CREATE TABLE claims (
    id                   uuid        PRIMARY KEY,
    -- The client's Idempotency-Key. The unique constraint is what makes
    -- concurrent retries of one request produce one claim.
    idempotency_key      text        NOT NULL UNIQUE,
    -- SHA-256 of the canonical request, to tell a retry from a reuse of the
    -- key for a different request.
    request_hash         bytea       NOT NULL,
    member_id            text        NOT NULL,
    state                char(2)     NOT NULL,
    household_size       int         NOT NULL CHECK (household_size BETWEEN 1 AND 20),
    monthly_income_cents bigint      NOT NULL CHECK (monthly_income_cents >= 0),
    service_date         date        NOT NULL,
    procedure_code       text        NOT NULL,
    amount_cents         bigint      NOT NULL CHECK (amount_cents > 0),
    status               text        NOT NULL CHECK (status IN ('approved', 'denied', 'pended')),
    status_reason        text        NOT NULL,
    -- The eligibility rule set and limit behind the decision; NULL while
    -- the claim is pended.
    rule_set             text,
    income_limit_cents   bigint,
    created_at           timestamptz NOT NULL,
    decided_at           timestamptz
);

-- Re-adjudication scans pended claims oldest first.
CREATE INDEX claims_pended_idx ON claims (created_at) WHERE status = 'pended';

CREATE TABLE outbox (
    seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    aggregate_id uuid        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay's work queue: unpublished events in commit order.
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
