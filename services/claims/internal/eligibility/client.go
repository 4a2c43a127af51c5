// Package eligibility is the claims service's client of the eligibility
// service. Every call goes through failsafe-go policies, outermost first:
//
//   - a fallback that turns every failure except a 4xx refusal into
//     ErrUnavailable, on which claims pends instead of failing;
//   - an overall timeout;
//   - a bulkhead bounding the calls in flight, so that a slow eligibility
//     service cannot tie up every claims request (a call that finds the
//     bulkhead full falls back at once);
//   - retries with exponential backoff and jitter for connection errors,
//     timeouts and 5xx/429 answers, safe because determinations are pure
//     reads;
//   - a circuit breaker that stops calling a service that keeps failing;
//   - a per-attempt timeout.
package eligibility

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Path is the eligibility endpoint, relative to the base URL.
const Path = "/v1/eligibility/determinations"

// Request asks for a determination.
type Request struct {
	Program            string `json:"program"`
	State              string `json:"state"`
	HouseholdSize      int    `json:"householdSize"`
	MonthlyIncomeCents int64  `json:"monthlyIncomeCents"`
}

// Determination is the part of the answer claims keeps.
type Determination struct {
	Eligible         bool    `json:"eligible"`
	IncomeLimitCents int64   `json:"incomeLimitCents"`
	FPLPercent       float64 `json:"fplPercent"`
	GuidelineYear    int     `json:"guidelineYear"`
	RuleSet          string  `json:"ruleSet"`
}

// ErrUnavailable means no determination could be had: the service is down,
// slow, failing, or the breaker is open. Claims pends instead of failing.
var ErrUnavailable = errors.New("eligibility unavailable")

// RejectedError is a 4xx answer: the request itself is wrong, so retrying
// cannot help and the breaker does not count it.
type RejectedError struct {
	Status int
	Detail string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("eligibility rejected the request (%d): %s", e.Status, e.Detail)
}

// transientError is a failure worth retrying: no answer, or a 5xx/429.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isTransient(err error) bool {
	var te *transientError
	return errors.As(err, &te) || errors.Is(err, timeout.ErrExceeded)
}

// Options tune the policies. The zero value of a field means its default.
type Options struct {
	// Timeout bounds a whole Determine call, retries included (default 2s).
	Timeout time.Duration
	// AttemptTimeout bounds one HTTP attempt (default 800ms).
	AttemptTimeout time.Duration
	// Retries after the first attempt (default 2; negative means none).
	Retries int
	// BackoffFirst and BackoffMax bound the delay between attempts
	// (defaults 50ms and 400ms), with ±30% jitter.
	BackoffFirst, BackoffMax time.Duration
	// BreakerFailures consecutive failed attempts open the breaker
	// (default 5); it stays open for BreakerDelay (default 5s) and closes
	// again after one successful trial call.
	BreakerFailures uint
	BreakerDelay    time.Duration
	// MaxConcurrency bounds the calls in flight (default 32); a call
	// waits up to MaxWait (default 100ms) for a slot before falling back.
	MaxConcurrency uint
	MaxWait        time.Duration
	// WrapTransport instruments the HTTP transport (tracing, say).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Meter records call outcomes; nil records none.
	Meter metric.Meter
	// OnRecovered is called when the breaker closes again after having
	// opened: eligibility answers, so pended claims can be decided.
	OnRecovered func()
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 2*time.Second)
	def(&o.AttemptTimeout, 800*time.Millisecond)
	def(&o.BackoffFirst, 50*time.Millisecond)
	def(&o.BackoffMax, 400*time.Millisecond)
	def(&o.BreakerDelay, 5*time.Second)
	switch {
	case o.Retries == 0:
		o.Retries = 2
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = 32
	}
	def(&o.MaxWait, 100*time.Millisecond)
	return o
}

// Client calls the eligibility service. One Client is shared by the whole
// process so that the breaker sees every call.
type Client struct {
	url      string
	http     *http.Client
	exec     failsafe.Executor[Determination]
	breaker  circuitbreaker.CircuitBreaker[Determination]
	outcomes metric.Int64Counter
}

// New returns a client of the eligibility service at baseURL.
func New(baseURL string, opts Options, l *slog.Logger) *Client {
	o := opts.withDefaults()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = int(o.MaxConcurrency)
	var rt http.RoundTripper = transport
	if o.WrapTransport != nil {
		rt = o.WrapTransport(rt)
	}

	handle := func(_ Determination, err error) bool { return isTransient(err) }
	retry := retrypolicy.NewBuilder[Determination]().
		HandleIf(handle).
		WithMaxRetries(o.Retries).
		WithBackoff(o.BackoffFirst, o.BackoffMax).
		WithJitterFactor(0.3).
		ReturnLastFailure().
		Build()
	breaker := circuitbreaker.NewBuilder[Determination]().
		HandleIf(handle).
		WithFailureThreshold(o.BreakerFailures).
		WithDelay(o.BreakerDelay).
		WithSuccessThreshold(1).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			l.Warn("eligibility circuit breaker changed state", "from", e.OldState.String(), "to", e.NewState.String())
			if e.NewState == circuitbreaker.ClosedState && o.OnRecovered != nil {
				o.OnRecovered()
			}
		}).
		Build()
	bh := bulkhead.NewBuilder[Determination](o.MaxConcurrency).WithMaxWaitTime(o.MaxWait).Build()
	// The fallback's answer is "no determination": the caller pends.
	fb := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[Determination]) (Determination, error) {
		return Determination{}, &unavailableError{cause: exec.LastError()}
	}).HandleIf(func(_ Determination, err error) bool {
		var rejected *RejectedError
		return err != nil && !errors.As(err, &rejected)
	}).Build()
	c := &Client{
		url:  strings.TrimRight(baseURL, "/") + Path,
		http: &http.Client{Transport: rt},
		// Outermost first: failures become "unavailable", the whole call
		// is bounded, the calls in flight are bounded, each attempt is
		// retried, passes the breaker, and is bounded on its own.
		exec: failsafe.With[Determination](
			fb,
			timeout.New[Determination](o.Timeout),
			bh,
			retry,
			breaker,
			timeout.New[Determination](o.AttemptTimeout),
		),
		breaker: breaker,
	}
	if o.Meter != nil {
		c.outcomes, _ = o.Meter.Int64Counter("claims.eligibility.calls",
			metric.WithDescription("Calls to the eligibility service by outcome: ok, rejected, or unavailable with its reason."))
	}
	return c
}

// unavailableError is the fallback's result: why no determination could
// be had.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return fmt.Sprintf("%v: %v", ErrUnavailable, e.cause) }
func (e *unavailableError) Unwrap() []error {
	return []error{ErrUnavailable, e.cause}
}

// reason names why a call fell back, for metrics and logs.
func reason(err error) string {
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		return "breaker_open"
	case errors.Is(err, bulkhead.ErrFull):
		return "bulkhead_full"
	case errors.Is(err, timeout.ErrExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

func (c *Client) record(ctx context.Context, outcome, why string) {
	if c.outcomes == nil {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("outcome", outcome)}
	if why != "" {
		attrs = append(attrs, attribute.String("reason", why))
	}
	c.outcomes.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// BreakerOpen reports whether calls are currently short-circuited.
func (c *Client) BreakerOpen() bool { return c.breaker.IsOpen() }

// Determine asks for a determination. The error is a *RejectedError for a
// 4xx answer, or wraps ErrUnavailable for everything else.
func (c *Client) Determine(ctx context.Context, req Request) (Determination, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Determination{}, fmt.Errorf("encode eligibility request: %w", err)
	}
	d, err := c.exec.WithContext(ctx).GetWithExecution(func(exec failsafe.Execution[Determination]) (Determination, error) {
		return c.attempt(exec.Context(), body)
	})
	var rejected *RejectedError
	switch {
	case err == nil:
		c.record(ctx, "ok", "")
		return d, nil
	case errors.As(err, &rejected):
		c.record(ctx, "rejected", "")
		return Determination{}, rejected
	case errors.Is(err, ErrUnavailable):
		c.record(ctx, "unavailable", reason(err))
		return Determination{}, err
	default:
		// Only a cancelled caller gets past the fallback.
		c.record(ctx, "unavailable", reason(err))
		return Determination{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

func (c *Client) attempt(ctx context.Context, body []byte) (Determination, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Determination{}, fmt.Errorf("build eligibility request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Determination{}, &transientError{fmt.Errorf("call eligibility: %w", err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Determination{}, &transientError{fmt.Errorf("read eligibility answer: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var d Determination
		if err := json.Unmarshal(raw, &d); err != nil || d.RuleSet == "" {
			// A proxy's error page or a half-written body: treat as a
			// failed attempt rather than a decision.
			return Determination{}, &transientError{fmt.Errorf("eligibility answered 200 with an unreadable body")}
		}
		return d, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return Determination{}, &transientError{fmt.Errorf("eligibility answered %d", resp.StatusCode)}
	default:
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(raw, &p)
		if p.Detail == "" {
			p.Detail = http.StatusText(resp.StatusCode)
		}
		return Determination{}, &RejectedError{Status: resp.StatusCode, Detail: p.Detail}
	}
}
