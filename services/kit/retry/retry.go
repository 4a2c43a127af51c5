// Package retry waits for a dependency that may still be starting or failing
// over: the database and Redis are often not up yet when the platform
// starts a task, and during a region failover their endpoints move.
package retry

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Policy bounds how long and how often Until tries.
type Policy struct {
	// Budget is the total time to keep trying; past it the last error is
	// returned and the process exits so that its supervisor restarts it.
	Budget time.Duration
	// First and Max bound the exponential backoff between attempts.
	First, Max time.Duration
}

// DefaultPolicy rides out a database restart or a Multi-AZ failover, which
// typically take 30 to 60 seconds.
var DefaultPolicy = Policy{Budget: 90 * time.Second, First: 100 * time.Millisecond, Max: 3 * time.Second}

// Until calls attempt until it succeeds, ctx is cancelled, the budget is
// spent, or permanent reports an error that waiting cannot fix (a wrong
// password, say). what names the dependency in logs and errors.
func Until(ctx context.Context, l *slog.Logger, what string, p Policy, attempt func(context.Context) error, permanent func(error) bool) error {
	if permanent == nil {
		permanent = func(error) bool { return false }
	}
	rp := retrypolicy.NewBuilder[any]().
		WithMaxRetries(-1).
		WithMaxDuration(p.Budget).
		WithBackoff(p.First, p.Max).
		WithJitterFactor(0.25).
		AbortIf(func(_ any, err error) bool { return err != nil && permanent(err) }).
		AbortOnErrors(context.Canceled).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[any]) {
			l.Warn("dependency not ready, retrying",
				"dependency", what, "attempt", e.Attempts(), "delay", e.Delay, "err", e.LastError())
		}).
		Build()
	err := failsafe.With[any](rp).WithContext(ctx).RunWithExecution(func(exec failsafe.Execution[any]) error {
		actx, cancel := context.WithTimeout(exec.Context(), 5*time.Second)
		defer cancel()
		return attempt(actx)
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", what, err)
	}
	return nil
}
