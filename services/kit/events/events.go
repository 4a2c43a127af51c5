// Package events holds the contracts of the events that cross service
// boundaries, so that the producer and its consumers cannot drift apart.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ClaimsStream is the Redis stream the claims outbox relay publishes to.
const ClaimsStream = "claims.events"

// TypeClaimDecided is emitted whenever a claim gets a status: on creation
// (approved, denied or pended) and again when a pended claim is decided.
const TypeClaimDecided = "claim.decided"

// Stream entry fields. The payload is the event's JSON; type and eventId are
// repeated as fields so that tools can filter without decoding it.
const (
	FieldType    = "type"
	FieldEventID = "eventId"
	FieldPayload = "payload"
)

// TraceFields are the W3C trace-context (and baggage) fields an entry may
// carry, named as the HTTP headers are, so that the consumer's work joins
// the trace of the request that produced the event.
var TraceFields = []string{"traceparent", "tracestate", "baggage"}

// TraceCarrier picks an entry's trace-context fields.
func TraceCarrier(values map[string]any) map[string]string {
	out := map[string]string{}
	for _, k := range TraceFields {
		if v, ok := values[k].(string); ok && v != "" {
			out[k] = v
		}
	}
	return out
}

// ClaimDecided is the claim.decided event.
type ClaimDecided struct {
	EventID    string    `json:"eventId"`
	Type       string    `json:"type"`
	ClaimID    string    `json:"claimId"`
	MemberID   string    `json:"memberId"`
	Status     string    `json:"status"`
	OccurredAt time.Time `json:"occurredAt"`
}

// Validate reports a payload that no consumer can act on.
func (e ClaimDecided) Validate() error {
	var missing []error
	for name, v := range map[string]string{"eventId": e.EventID, "claimId": e.ClaimID, "memberId": e.MemberID, "status": e.Status} {
		if v == "" {
			missing = append(missing, fmt.Errorf("%s is empty", name))
		}
	}
	if e.Type != TypeClaimDecided {
		missing = append(missing, fmt.Errorf("type is %q, want %q", e.Type, TypeClaimDecided))
	}
	if e.OccurredAt.IsZero() {
		missing = append(missing, errors.New("occurredAt is missing"))
	}
	return errors.Join(missing...)
}

// DecodeClaimDecided parses and validates a stream entry's payload.
func DecodeClaimDecided(payload string) (ClaimDecided, error) {
	var e ClaimDecided
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return ClaimDecided{}, fmt.Errorf("decode %s: %w", TypeClaimDecided, err)
	}
	if err := e.Validate(); err != nil {
		return ClaimDecided{}, fmt.Errorf("invalid %s: %w", TypeClaimDecided, err)
	}
	return e, nil
}
