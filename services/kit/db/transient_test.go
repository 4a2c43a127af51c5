package db

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestTransient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"server killed under the session", fmt.Errorf("read claim: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"server starting", &pgconn.PgError{Code: "57P03"}, true},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"read-only transaction", &pgconn.PgError{Code: "25006"}, false},
		{"bad password", &pgconn.PgError{Code: "28P01"}, false},
		{"connection reset", fmt.Errorf("query: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{"connection refused", syscall.ECONNREFUSED, true},
		{"connection closed under the call", fmt.Errorf("commit: %w", pgconn.ErrConnClosed), true},
		{"canceled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"not found", errors.New("claim not found"), false},
		{"nil", nil, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestRetryTransient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	calls := 0
	got, err := RetryTransient(ctx, 5, func(context.Context) (int, error) {
		calls++
		if calls < 3 {
			return 0, &pgconn.PgError{Code: "57P01"}
		}
		return 42, nil
	})
	if got != 42 || err != nil || calls != 3 {
		t.Errorf("transient twice: %d, %v after %d calls; want 42 after 3", got, err, calls)
	}
	calls = 0
	notFound := errors.New("not found")
	if _, err := RetryTransient(ctx, 5, func(context.Context) (int, error) { calls++; return 0, notFound }); !errors.Is(err, notFound) || calls != 1 {
		t.Errorf("permanent error: %v after %d calls; want it at once", err, calls)
	}
	calls = 0
	if _, err := RetryTransient(ctx, 3, func(context.Context) (int, error) { calls++; return 0, syscall.ECONNREFUSED }); !errors.Is(err, syscall.ECONNREFUSED) || calls != 3 {
		t.Errorf("always transient: %v after %d calls; want the last error after 3", err, calls)
	}
}
