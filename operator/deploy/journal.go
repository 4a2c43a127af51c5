package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/stacks"
)

// Journal tables: one record per deploy ("<service>/<id>"), the service's
// open or latest deploy ("<service>" → id), and request ids seen.
const (
	tableDeploys  = "deploys"
	tableCurrent  = "deploy-current"
	tableRequests = "deploy-requests"
)

func newID(now func() string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now() + "-" + hex.EncodeToString(b)
}

func (e *Engine) load(ctx context.Context, service, id string) (*Deploy, error) {
	it, err := e.Store.Get(ctx, tableDeploys, service+"/"+id)
	if err != nil {
		return nil, fmt.Errorf("read deploy %s of %s: %w", id, service, err)
	}
	var d Deploy
	if err := json.Unmarshal(it.Value, &d); err != nil {
		return nil, fmt.Errorf("read deploy %s of %s: %w", id, service, err)
	}
	d.version = it.Version
	return &d, nil
}

// Current returns the service's open deploy, or its latest one, or
// ErrNoDeploy.
func (e *Engine) Current(ctx context.Context, service string) (*Deploy, error) {
	it, err := e.Store.Get(ctx, tableCurrent, service)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has never been deployed by tandem", ErrNoDeploy, service)
	}
	if err != nil {
		return nil, fmt.Errorf("read the state store: %w", err)
	}
	return e.load(ctx, service, string(it.Value))
}

// History lists the service's deploys, newest first.
func (e *Engine) History(ctx context.Context, service string) ([]*Deploy, error) {
	items, err := e.Store.List(ctx, tableDeploys, service+"/")
	if err != nil {
		return nil, fmt.Errorf("read the state store: %w", err)
	}
	out := make([]*Deploy, 0, len(items))
	for _, it := range items {
		var d Deploy
		if err := json.Unmarshal(it.Value, &d); err != nil {
			return nil, fmt.Errorf("read deploy %s: %w", it.Key, err)
		}
		d.version = it.Version
		out = append(out, &d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

// save writes d over the journal's current version of it. An intent written
// meanwhile by a control command is kept (unless this write handled it), so
// executors and control commands never lose each other's writes; a record
// now stamped with a newer lease epoch means this operator was superseded.
func (e *Engine) save(ctx context.Context, d *Deploy, handled string) error {
	d.Updated = e.clock().Now()
	for range 20 {
		cur, err := e.load(ctx, d.Request.Service, d.ID)
		if err != nil {
			return err
		}
		if cur.Epoch > d.Epoch {
			return fmt.Errorf("deploy %s was taken over by %s (epoch %d > %d); this operator stops", d.ID, cur.Holder, cur.Epoch, d.Epoch)
		}
		d.Intent = cur.Intent
		if handled != "" && cur.Intent == handled {
			d.Intent = ""
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		v, err := e.Store.Put(ctx, tableDeploys, d.Request.Service+"/"+d.ID, b, cur.version)
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal deploy %s: %w", d.ID, err)
		}
		d.version = v
		return nil
	}
	return fmt.Errorf("journal deploy %s: too many concurrent writers", d.ID)
}

func (e *Engine) event(d *Deploy, phase, format string, args ...any) *Event {
	ev := Event{At: e.clock().Now(), Phase: phase, Message: fmt.Sprintf(format, args...), Epoch: d.Epoch}
	d.Events = append(d.Events, ev)
	if e.OnEvent != nil {
		e.OnEvent(d, ev)
	}
	return &d.Events[len(d.Events)-1]
}

// Validate checks a request before anything is read or changed.
func Validate(req Request) error {
	if req.Region == "" || req.Service == "" || req.Version == "" {
		return fmt.Errorf("%w: a deploy needs a region, a service and a version", ErrPreflight)
	}
	if err := stacks.ValidateSteps(req.Steps); err != nil {
		return fmt.Errorf("%w: steps: %v", ErrPreflight, err)
	}
	if req.Count < 1 {
		return fmt.Errorf("%w: count %d must be at least 1", ErrPreflight, req.Count)
	}
	p := req.Policy
	if p.MinSamples < 1 || p.StepBake <= 0 || p.AnalysisTimeout < p.StepBake || p.HealthyTimeout <= 0 || p.LeaseTTL < 1e9 {
		return fmt.Errorf("%w: incomplete policy %+v", ErrPreflight, p)
	}
	if p.OnDeadline != stacks.OnDeadlineRollback && p.OnDeadline != stacks.OnDeadlineHold {
		return fmt.Errorf("%w: onDeadline %q is not rollback or hold", ErrPreflight, p.OnDeadline)
	}
	return nil
}

// Start runs preflight and opens a deploy in the journal; it changes
// nothing on the platform. A request id already seen returns that deploy
// (started reports false), so a retried pipeline never starts a second one.
// An open deploy of the same service refuses the new one, naming it.
func (e *Engine) Start(ctx context.Context, req Request) (d *Deploy, started bool, err error) {
	if err := Validate(req); err != nil {
		return nil, false, err
	}
	svc := req.Service
	if req.RequestID != "" {
		if it, err := e.Store.Get(ctx, tableRequests, req.RequestID); err == nil {
			service, id, _ := strings.Cut(string(it.Value), "/")
			d, err := e.load(ctx, service, id)
			if err != nil {
				return nil, false, err
			}
			if d.Request.Service != req.Service || d.Request.Version != req.Version || !maps.Equal(d.Request.Env, req.Env) {
				return nil, false, fmt.Errorf("%w: request id %s already started deploy %s of %s %s; a different deploy needs a different request id",
					ErrRequestIDReused, req.RequestID, d.ID, d.Request.Service, d.Request.Version)
			}
			return d, false, nil
		} else if !errors.Is(err, state.ErrNotFound) {
			return nil, false, fmt.Errorf("read the state store: %w", err)
		}
	}
	var curVersion int64
	if it, err := e.Store.Get(ctx, tableCurrent, svc); err == nil {
		curVersion = it.Version
		cur, err := e.load(ctx, svc, string(it.Value))
		if err != nil {
			return nil, false, err
		}
		if cur.Open() {
			return nil, false, fmt.Errorf("%w: %s already has an open deploy %s (%s, %s, last run by %s); watch it, or end it with `tandem deploy abort %s`",
				ErrPreflight, svc, cur.ID, cur.Request.Version, cur.Status, holderOf(cur), svc)
		}
	} else if !errors.Is(err, state.ErrNotFound) {
		return nil, false, fmt.Errorf("read the state store: %w", err)
	}

	w, err := e.Traffic.Weights(ctx, req.Region, svc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read weights of %s in %s: %v", ErrPreflight, svc, req.Region, err)
	}
	var live string
	switch {
	case w.Blue == 100 && w.Green == 0:
		live = "blue"
	case w.Green == 100 && w.Blue == 0:
		live = "green"
	default:
		return nil, false, fmt.Errorf("%w: %s in %s is split %d/%d (blue/green) outside any deploy; set one color to 100 first", ErrPreflight, svc, req.Region, w.Blue, w.Green)
	}
	h, err := e.Fleet.Health(ctx, req.Region, svc, live)
	if err != nil || h.Healthy == 0 {
		return nil, false, fmt.Errorf("%w: live color %s of %s has no healthy target (%v)", ErrPreflight, live, svc, err)
	}
	if idle, err := e.Fleet.Health(ctx, req.Region, svc, other(live)); err == nil && idle.Targets > 0 {
		return nil, false, fmt.Errorf("%w: idle color %s of %s still has %d task(s) from an earlier deploy; retire them first", ErrPreflight, other(live), svc, idle.Targets)
	}
	prev, err := e.Fleet.Release(ctx, req.Region, svc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read the live release of %s: %v", ErrPreflight, svc, err)
	}

	now := e.clock().Now()
	d = &Deploy{ID: newID(func() string { return now.UTC().Format("20060102T150405.000") }), Request: req, From: live, To: other(live),
		Previous: prev, Phase: PhaseLaunch, PhaseAt: now, Verified: w, Status: StatusRunning, Started: now, Updated: now}
	ev := e.event(d, "preflight", "%s is live on %s (%s) with %d/%d healthy; deploying %s to %s", svc, live, prev.Version, h.Healthy, h.Targets, req.Version, d.To)
	ev.Weights = &w
	b, _ := json.Marshal(d)
	if d.version, err = e.Store.Put(ctx, tableDeploys, svc+"/"+d.ID, b, 0); err != nil {
		return nil, false, fmt.Errorf("journal the new deploy: %w", err)
	}
	if req.RequestID != "" {
		if _, err := e.Store.Put(ctx, tableRequests, req.RequestID, []byte(svc+"/"+d.ID), 0); errors.Is(err, state.ErrConflict) {
			// A concurrent retry with the same request id won the race.
			it, gerr := e.Store.Get(ctx, tableRequests, req.RequestID)
			if gerr != nil {
				return nil, false, gerr
			}
			service, id, _ := strings.Cut(string(it.Value), "/")
			existing, lerr := e.load(ctx, service, id)
			return existing, false, lerr
		} else if err != nil {
			return nil, false, fmt.Errorf("journal the request id: %w", err)
		}
	}
	if _, err := e.Store.Put(ctx, tableCurrent, svc, []byte(d.ID), curVersion); err != nil {
		if errors.Is(err, state.ErrConflict) {
			// Close the journal entry so history does not show a deploy
			// that never ran as open.
			d.Status, d.Reason, d.Ended = StatusFailed, "refused: another deploy of "+svc+" started at the same moment", e.clock().Now()
			if b, merr := json.Marshal(d); merr == nil {
				_, _ = e.Store.Put(ctx, tableDeploys, svc+"/"+d.ID, b, d.version)
			}
			return nil, false, fmt.Errorf("%w: another deploy of %s started at the same moment; this one is refused", ErrPreflight, svc)
		}
		return nil, false, fmt.Errorf("journal the new deploy: %w", err)
	}
	return d, true, nil
}

func holderOf(d *Deploy) string {
	if d.Holder == "" {
		return "no operator"
	}
	return d.Holder
}

// Control sends an intent (pause, resume, promote, abort) to the service's
// open deploy. The executor acts on it at its next look; with no executor
// running, the caller runs one (Run) to carry it out.
func (e *Engine) Control(ctx context.Context, service, intent string) (*Deploy, error) {
	switch intent {
	case IntentPause, IntentResume, IntentPromote, IntentAbort:
	default:
		return nil, fmt.Errorf("unknown intent %q", intent)
	}
	for range 20 {
		d, err := e.Current(ctx, service)
		if err != nil {
			return nil, err
		}
		if !d.Open() {
			return d, fmt.Errorf("%w: the latest deploy of %s (%s) already ended: %s", ErrNoDeploy, service, d.ID, d.Status)
		}
		d.Intent = intent
		b, _ := json.Marshal(d)
		v, err := e.Store.Put(ctx, tableDeploys, service+"/"+d.ID, b, d.version)
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("journal the %s intent: %w", intent, err)
		}
		d.version = v
		return d, nil
	}
	return nil, fmt.Errorf("journal the %s intent: the deploy changes too fast; try again", intent)
}
