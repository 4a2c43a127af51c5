package events

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeClaimDecided feeds arbitrary payloads to the decoder the
// notifications consumer runs on every stream entry: it accepts only
// complete events (which then survive a round trip) and rejects the rest
// with an error, never a panic. The seed corpus is in
// testdata/fuzz/FuzzDecodeClaimDecided.
func FuzzDecodeClaimDecided(f *testing.F) {
	f.Add(`{"eventId":"e","type":"claim.decided","claimId":"c","memberId":"m","status":"approved","occurredAt":"2026-11-02T10:00:00Z"}`)
	f.Fuzz(func(t *testing.T, payload string) {
		e, err := DecodeClaimDecided(payload)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted an invalid event %+v: %v", e, err)
		}
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeClaimDecided(string(raw))
		if err != nil || !back.OccurredAt.Equal(e.OccurredAt) || back.EventID != e.EventID || back.Status != e.Status {
			t.Fatalf("round trip of %+v gave %+v, %v", e, back, err)
		}
	})
}
