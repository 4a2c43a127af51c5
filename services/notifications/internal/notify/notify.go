// Package notify records the notifications members receive about their
// claims, once per claim decision however often the event arrives.
package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/services/kit/events"
)

// Notification is one message to a member.
type Notification struct {
	ID         string    `json:"id"`
	EventID    string    `json:"eventId"`
	ClaimID    string    `json:"claimId"`
	MemberID   string    `json:"memberId"`
	Status     string    `json:"status"`
	Message    string    `json:"message"`
	OccurredAt time.Time `json:"occurredAt"`
	CreatedAt  time.Time `json:"createdAt"`
	Delivery   Delivery  `json:"delivery"`
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
	DeliverySkipped   = "skipped"
)

// Delivery is how the webhook delivery of a notification went.
type Delivery struct {
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	DeliveredAt *time.Time `json:"deliveredAt,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
}

// Message is the text a member reads for a decision.
func Message(e events.ClaimDecided) string {
	switch e.Status {
	case "approved":
		return fmt.Sprintf("Your claim %s was approved.", e.ClaimID)
	case "denied":
		return fmt.Sprintf("Your claim %s was denied because your income is above the program limit.", e.ClaimID)
	case "pended":
		return fmt.Sprintf("Your claim %s was received and is waiting for an eligibility decision.", e.ClaimID)
	default:
		return fmt.Sprintf("Your claim %s is now %s.", e.ClaimID, e.Status)
	}
}

// Store keeps notifications. Writes go to the primary; lists go to the
// replica when there is one, and to the primary when the replica fails.
type Store struct {
	primary *pgxpool.Pool
	replica *pgxpool.Pool
	// deliver says whether new notifications are queued for the webhook.
	deliver bool
	// traceContext captures the recording span's context for delivery.
	traceContext func(context.Context) map[string]string
}

// NewStore returns a store; replica may be the primary itself. With
// deliver set, new notifications are queued for webhook delivery;
// otherwise they are recorded as skipped. traceContext may be nil.
func NewStore(primary, replica *pgxpool.Pool, deliver bool, traceContext func(context.Context) map[string]string) *Store {
	if traceContext == nil {
		traceContext = func(context.Context) map[string]string { return nil }
	}
	return &Store{primary: primary, replica: replica, deliver: deliver, traceContext: traceContext}
}

// Ping checks the primary, where every write goes.
func (s *Store) Ping(ctx context.Context) error { return s.primary.Ping(ctx) }

// Outcome says what Record did with an event.
type Outcome int

// Outcomes.
const (
	// Stored means a new notification was written.
	Stored Outcome = iota
	// Redelivered means this event was processed before.
	Redelivered
	// Duplicate means another event already announced this claim's
	// status, as happens when the relay publishes a decision twice.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case Redelivered:
		return "redelivered"
	case Duplicate:
		return "duplicate"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Record stores the notification for e, exactly once per event id and per
// claim status, in one transaction with the inbox row.
func (s *Store) Record(ctx context.Context, e events.ClaimDecided, streamID string) (Outcome, error) {
	out := Stored
	err := pgx.BeginFunc(ctx, s.primary, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			"INSERT INTO processed_events (event_id, stream_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", e.EventID, streamID)
		if err != nil {
			return fmt.Errorf("record event %s in the inbox: %w", e.EventID, err)
		}
		if tag.RowsAffected() == 0 {
			out = Redelivered
			return nil
		}
		state, due := DeliverySkipped, (*time.Time)(nil)
		if s.deliver {
			now := time.Now()
			state, due = DeliveryPending, &now
		}
		tc := s.traceContext(ctx)
		if tc == nil {
			tc = map[string]string{}
		}
		tag, err = tx.Exec(ctx, `INSERT INTO notifications (id, event_id, claim_id, member_id, status, message, occurred_at,
			delivery_state, next_attempt_at, trace_context)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
			uuid.NewString(), e.EventID, e.ClaimID, e.MemberID, e.Status, Message(e), e.OccurredAt, state, due, tc)
		if err != nil {
			return fmt.Errorf("store notification for event %s: %w", e.EventID, err)
		}
		if tag.RowsAffected() == 0 {
			out = Duplicate
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// ForClaim lists a claim's notifications, oldest first.
func (s *Store) ForClaim(ctx context.Context, claimID string) ([]Notification, error) {
	ns, err := s.list(ctx, s.replica, claimID)
	if err != nil && s.replica != s.primary {
		ns, err = s.list(ctx, s.primary, claimID)
	}
	return ns, err
}

func (s *Store) list(ctx context.Context, pool *pgxpool.Pool, claimID string) ([]Notification, error) {
	rows, err := pool.Query(ctx, `SELECT id::text, event_id::text, claim_id::text, member_id, status, message, occurred_at, created_at,
			delivery_state, delivery_attempts, delivered_at, coalesce(last_error, '')
		FROM notifications WHERE claim_id = $1 ORDER BY occurred_at, created_at`, claimID)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	ns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		err := r.Scan(&n.ID, &n.EventID, &n.ClaimID, &n.MemberID, &n.Status, &n.Message, &n.OccurredAt, &n.CreatedAt,
			&n.Delivery.State, &n.Delivery.Attempts, &n.Delivery.DeliveredAt, &n.Delivery.LastError)
		n.OccurredAt, n.CreatedAt = n.OccurredAt.UTC(), n.CreatedAt.UTC()
		if n.Delivery.DeliveredAt != nil {
			at := n.Delivery.DeliveredAt.UTC()
			n.Delivery.DeliveredAt = &at
		}
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	if ns == nil {
		ns = []Notification{}
	}
	return ns, nil
}

// ErrBadClaimID means the claim id is not a UUID.
var ErrBadClaimID = errors.New("claimId must be a UUID")

// ValidClaimID checks a claim id before it reaches the database.
func ValidClaimID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return ErrBadClaimID
	}
	return nil
}
