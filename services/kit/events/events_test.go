package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeClaimDecided(t *testing.T) {
	t.Parallel()
	valid := ClaimDecided{
		EventID: "e-1", Type: TypeClaimDecided, ClaimID: "c-1", MemberID: "M-1",
		Status: "approved", OccurredAt: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC),
	}
	raw, err := json.Marshal(valid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload string
		want    ClaimDecided
		wantErr string
	}{
		{name: "round trip", payload: string(raw), want: valid},
		{name: "not json", payload: "{", wantErr: "decode claim.decided"},
		{name: "missing claim id", payload: strings.Replace(string(raw), `"c-1"`, `""`, 1), wantErr: "claimId is empty"},
		{name: "wrong type", payload: strings.Replace(string(raw), TypeClaimDecided, "claim.deleted", 1), wantErr: `type is "claim.deleted"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeClaimDecided(tt.payload)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTraceCarrierPicksOnlyTraceFields(t *testing.T) {
	t.Parallel()
	got := TraceCarrier(map[string]any{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "",
		"payload":     "{}",
		"baggage":     7,
	})
	want := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if len(got) != len(want) || got["traceparent"] != want["traceparent"] {
		t.Errorf("TraceCarrier = %v, want %v", got, want)
	}
}
