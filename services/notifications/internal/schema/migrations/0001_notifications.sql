-- Notifications sent to members about their claims, and the inbox of
-- events already processed. Both unique constraints make consumption
-- idempotent: a redelivered event (same event id) and a republished
-- decision (same claim and status under a new event id) each leave exactly
-- one notification.

CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    stream_id    text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id          uuid        PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    claim_id    uuid        NOT NULL,
    member_id   text        NOT NULL,
    status      text        NOT NULL,
    message     text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (claim_id, status)
);
