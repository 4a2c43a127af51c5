package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
)

const (
	tableFailovers = "failovers"
	tableCurrent   = "failover-current"
	currentKey     = "platform"
	leaseResource  = "failover"
)

func (e *Engine) load(ctx context.Context, id string) (*Failover, error) {
	it, err := e.Store.Get(ctx, tableFailovers, id)
	if err != nil {
		return nil, fmt.Errorf("read failover %s: %w", id, err)
	}
	var f Failover
	if err := json.Unmarshal(it.Value, &f); err != nil {
		return nil, fmt.Errorf("read failover %s: %w", id, err)
	}
	f.version = it.Version
	return &f, nil
}

// Current returns the open or latest failover, or ErrNoFailover.
func (e *Engine) Current(ctx context.Context) (*Failover, error) {
	it, err := e.Store.Get(ctx, tableCurrent, currentKey)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("%w: this platform has never failed over", ErrNoFailover)
	}
	if err != nil {
		return nil, fmt.Errorf("read the state store: %w", err)
	}
	return e.load(ctx, string(it.Value))
}

func (e *Engine) save(ctx context.Context, f *Failover) error {
	cur, err := e.load(ctx, f.ID)
	if err != nil {
		return err
	}
	if cur.Epoch > f.Epoch {
		return fmt.Errorf("failover %s was taken over by %s at epoch %d; this operator (epoch %d) stops", f.ID, cur.Holder, cur.Epoch, f.Epoch)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	v, err := e.Store.Put(ctx, tableFailovers, f.ID, b, cur.version)
	if err != nil {
		return fmt.Errorf("journal failover %s: %w", f.ID, err)
	}
	f.version = v
	return nil
}

// Start checks readiness and journals a failover, changing nothing on the
// platform. Readiness refusals stop it unless req.Force.
func (e *Engine) Start(ctx context.Context, req Request) (*Failover, error) {
	var curVersion int64
	if it, err := e.Store.Get(ctx, tableCurrent, currentKey); err == nil {
		curVersion = it.Version
		cur, err := e.load(ctx, string(it.Value))
		if err != nil {
			return nil, err
		}
		if cur.Status == StatusRunning {
			return nil, fmt.Errorf("%w: failover %s (%s -> %s) is still open at step %d; finish it with `tandem failover resume`", ErrRefused, cur.ID, cur.From, cur.To, cur.Next)
		}
	} else if !errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("read the state store: %w", err)
	}
	plan, err := e.MakePlan(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(plan.Refusals) > 0 && !req.Force {
		return nil, fmt.Errorf("%w: %s (--force overrides)", ErrRefused, strings.Join(plan.Refusals, "; "))
	}
	if plan.Mode == Planned && !plan.Reachable {
		return nil, fmt.Errorf("%w: a planned switchover needs the old primary; --force cannot change that, use --unplanned", ErrRefused)
	}
	now := time.Now()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	f := &Failover{ID: now.UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b), Request: req, Plan: *plan, Mode: plan.Mode,
		From: plan.From, To: plan.To, Steps: plan.Steps, Status: StatusRunning, Started: now, Forced: req.Force && len(plan.Refusals) > 0}
	if plan.Mode == Unplanned {
		f.LostBytes = plan.Lag.Bytes
	}
	js, _ := json.Marshal(f)
	if f.version, err = e.Store.Put(ctx, tableFailovers, f.ID, js, 0); err != nil {
		return nil, fmt.Errorf("journal the failover: %w", err)
	}
	if _, err := e.Store.Put(ctx, tableCurrent, currentKey, []byte(f.ID), curVersion); err != nil {
		if errors.Is(err, state.ErrConflict) {
			return nil, fmt.Errorf("%w: another failover started at the same moment", ErrRefused)
		}
		return nil, fmt.Errorf("journal the failover: %w", err)
	}
	return f, nil
}

// Run executes the open failover from its next step under the failover
// lease, journaling each step. After a crash it resumes where the journal
// says; each step is safe to repeat.
func (e *Engine) Run(ctx context.Context) (*Failover, error) {
	f, err := e.Current(ctx)
	if err != nil {
		return nil, err
	}
	if f.Status != StatusRunning {
		return f, nil
	}
	ttl := f.Request.LeaseTTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	ctx, held, err := state.Hold(ctx, e.Store, leaseResource, e.Holder, ttl)
	if err != nil {
		return f, fmt.Errorf("take the failover lease: %w", err)
	}
	defer held.Release(context.WithoutCancel(ctx), e.Store)
	lease := held.Lease
	f.Epoch, f.Holder = lease.Epoch, e.Holder
	if err := e.save(ctx, f); err != nil {
		return f, err
	}
	for f.Next < len(f.Steps) {
		if ctx.Err() != nil {
			if lost := held.Lost(); lost != nil {
				return f, fmt.Errorf("failover lease lost; this operator stopped acting: %w", lost)
			}
			return f, ctx.Err()
		}
		s := &f.Steps[f.Next]
		s.Started, s.Epoch = time.Now(), f.Epoch
		detail, err := e.do(ctx, f, f.Next)
		s.Duration, s.Detail = time.Since(s.Started), detail
		if err != nil {
			if !s.BestEffort || ctx.Err() != nil {
				s.Detail = "failed: " + err.Error()
				_ = e.save(context.WithoutCancel(ctx), f)
				return f, fmt.Errorf("failover %s -> %s, step %q: %w (the failover stays open; `tandem failover resume` retries this step)", f.From, f.To, s.Name, err)
			}
			s.Detail = "best effort, not done: " + err.Error()
		}
		s.Done = true
		f.Next++
		if err := e.save(ctx, f); err != nil {
			return f, err
		}
		if e.OnStep != nil {
			e.OnStep(f, *s)
		}
	}
	f.Status, f.Ended = StatusCompleted, time.Now()
	f.Unavailable = f.RoutedAt.Sub(f.FencedAt)
	if err := e.save(ctx, f); err != nil {
		return f, err
	}
	return f, nil
}

// do performs step i of the plan and returns what it did.
func (e *Engine) do(ctx context.Context, f *Failover, i int) (string, error) {
	switch i {
	case 0:
		if f.FencedAt.IsZero() {
			f.FencedAt = time.Now()
		}
		return "front door stops routing to " + f.From, e.Routing.FenceRouting(ctx)
	case 1:
		return "tasks drained and stopped", e.Fleets.StopFleets(ctx, f.From)
	case 2:
		pos, err := e.Database.FenceDatabase(ctx, f.From)
		if err != nil {
			return "", err
		}
		if pos != "" {
			f.FencePosition = pos
		}
		if f.FencePosition == "" {
			return "the server was already down: endpoint closed and data marked to restart as a standby", nil
		}
		return "read-only and stopped at " + f.FencePosition, nil
	case 3:
		if f.Mode == Unplanned || f.FencePosition == "" {
			pos, err := e.Database.DatabasePosition(ctx, f.To)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("not waited for: the old primary is gone; the replica stands at %s (estimated loss %d bytes of WAL)", pos, f.LostBytes), nil
		}
		return e.waitCatchUp(ctx, f)
	case 4:
		return "writable", e.Database.PromoteDatabase(ctx, f.To)
	case 5:
		return "writes paused", e.Cache.FenceCache(ctx, f.From)
	case 6:
		return "primary", e.Cache.PromoteCache(ctx, f.To)
	case 7:
		return "every service healthy", e.Fleets.ActivateFleets(ctx, f.To)
	case 8:
		if err := e.Routing.Route(ctx, f.To); err != nil {
			return "", err
		}
		f.RoutedAt = time.Now()
		return "front door routes to " + f.To, nil
	case 9:
		if err := e.Database.VerifyWrite(ctx, f.To, f.Epoch); err != nil {
			return "", err
		}
		return fmt.Sprintf("synthetic write stamped with epoch %d read back", f.Epoch), nil
	}
	return "", fmt.Errorf("unknown step %d", i)
}

func (e *Engine) waitCatchUp(ctx context.Context, f *Failover) (string, error) {
	want, err := topology.ParsePosition(f.FencePosition)
	if err != nil {
		return "", err
	}
	timeout := f.Request.CatchUpTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	last := "an unknown position"
	for {
		pos, err := e.Database.DatabasePosition(ctx, f.To)
		if err == nil {
			last = pos
			if got, perr := topology.ParsePosition(pos); perr == nil && got >= want {
				return fmt.Sprintf("replayed %s >= fence %s (RPO 0)", pos, f.FencePosition), nil
			}
		}
		if time.Now().After(deadline) {
			if f.Forced {
				got, _ := topology.ParsePosition(pos)
				if got < want {
					f.LostBytes = int64(want - got)
				}
				return fmt.Sprintf("forced: replica at %s did not reach the fence %s within %s; %d bytes lost", pos, f.FencePosition, timeout, f.LostBytes), nil
			}
			why := fmt.Sprintf("last seen at %s", last)
			if err != nil {
				why += "; now: " + err.Error()
			}
			return "", fmt.Errorf("replica in %s did not reach the fence position %s within %s (%s); nothing was promoted", f.To, f.FencePosition, timeout, why)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
