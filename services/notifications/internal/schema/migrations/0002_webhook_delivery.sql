-- Notifications are delivered to a webhook and remember how that went.
--
-- delivery_state: pending (due at next_attempt_at), delivered, failed
-- (gave up: the receiver refused it, or every attempt failed), or skipped
-- (no webhook was configured when it was recorded). delivery_attempts
-- counts the attempts that reached for the receiver; next_attempt_at also
-- serves as a lease: a worker that takes a notification pushes it into the
-- future, so a worker that dies mid-delivery leaves it to be retried after
-- the lease instead of losing it.

ALTER TABLE notifications
    ADD COLUMN delivery_state    text        NOT NULL DEFAULT 'skipped'
        CHECK (delivery_state IN ('pending', 'delivered', 'failed', 'skipped')),
    ADD COLUMN delivery_attempts int         NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at   timestamptz,
    ADD COLUMN delivered_at      timestamptz,
    ADD COLUMN last_error        text,
    -- The trace context of the consumer that recorded the notification, so
    -- that its delivery joins the trace of the claim that caused it.
    ADD COLUMN trace_context     jsonb       NOT NULL DEFAULT '{}';

-- The delivery worker's queue: pending notifications by due time.
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE delivery_state = 'pending';
