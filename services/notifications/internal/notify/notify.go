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
}

// NewStore returns a store; replica may be the primary itself.
func NewStore(primary, replica *pgxpool.Pool) *Store {
	return &Store{primary: primary, replica: replica}
}

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
		tag, err = tx.Exec(ctx, `INSERT INTO notifications (id, event_id, claim_id, member_id, status, message, occurred_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			uuid.NewString(), e.EventID, e.ClaimID, e.MemberID, e.Status, Message(e), e.OccurredAt)
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
	rows, err := pool.Query(ctx, `SELECT id::text, event_id::text, claim_id::text, member_id, status, message, occurred_at, created_at
		FROM notifications WHERE claim_id = $1 ORDER BY occurred_at, created_at`, claimID)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	ns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		err := r.Scan(&n.ID, &n.EventID, &n.ClaimID, &n.MemberID, &n.Status, &n.Message, &n.OccurredAt, &n.CreatedAt)
		n.OccurredAt, n.CreatedAt = n.OccurredAt.UTC(), n.CreatedAt.UTC()
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
