package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandemhq/tandem/services/kit/logging"
)

var fast = Policy{Budget: 2 * time.Second, First: time.Millisecond, Max: 5 * time.Millisecond}

func TestUntil(t *testing.T) {
	t.Parallel()
	errDown := errors.New("connection refused")
	errAuth := errors.New("password authentication failed")
	tests := []struct {
		name         string
		failures     int   // attempts that fail before success
		failWith     error // error of failing attempts
		policy       Policy
		wantErr      error
		wantAttempts int
	}{
		{name: "first try", failures: 0, policy: fast, wantAttempts: 1},
		{name: "comes up after a few tries", failures: 3, failWith: errDown, policy: fast, wantAttempts: 4},
		{name: "permanent error stops at once", failures: 100, failWith: errAuth, policy: fast, wantErr: errAuth, wantAttempts: 1},
		{name: "budget spent", failures: 1 << 30, failWith: errDown,
			policy: Policy{Budget: 50 * time.Millisecond, First: 5 * time.Millisecond, Max: 10 * time.Millisecond}, wantErr: errDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			attempts := 0
			err := Until(context.Background(), logging.Discard(), "postgres", tt.policy, func(context.Context) error {
				attempts++
				if attempts <= tt.failures {
					return tt.failWith
				}
				return nil
			}, func(err error) bool { return errors.Is(err, errAuth) })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantAttempts != 0 && attempts != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", attempts, tt.wantAttempts)
			}
		})
	}
}

func TestUntilStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	err := Until(ctx, logging.Discard(), "redis", Policy{Budget: time.Minute, First: 5 * time.Millisecond, Max: 10 * time.Millisecond},
		func(context.Context) error { return errors.New("down") }, nil)
	if err == nil {
		t.Fatal("want an error after cancellation")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Until kept trying for %s after cancellation", time.Since(start))
	}
}
