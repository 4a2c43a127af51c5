package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Leases live in this table, one item per guarded resource
// ("deploy/claims", "failover").
const leaseTable = "leases"

// Lease is held by one operator at a time. Its epoch increases on every
// change of holder, so work stamped with an older epoch is recognisably
// stale.
type Lease struct {
	Resource string    `json:"resource"`
	Holder   string    `json:"holder"`
	Epoch    int64     `json:"epoch"`
	Expires  time.Time `json:"expires"`
	version  int64
}

// ErrHeld means another live holder has the lease.
var ErrHeld = errors.New("lease is held")

// HeldError names the holder, for a message a person can act on.
type HeldError struct{ Lease Lease }

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held by %s (epoch %d) until %s", e.Lease.Resource, e.Lease.Holder, e.Lease.Epoch, e.Lease.Expires.Format(time.RFC3339))
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// GetLease reads the current lease of a resource (zero Lease if none).
func GetLease(ctx context.Context, s Store, resource string) (Lease, error) {
	it, err := s.Get(ctx, leaseTable, resource)
	if errors.Is(err, ErrNotFound) {
		return Lease{Resource: resource}, nil
	}
	if err != nil {
		return Lease{}, err
	}
	var l Lease
	if err := json.Unmarshal(it.Value, &l); err != nil {
		return Lease{}, fmt.Errorf("lease %s: %w", resource, err)
	}
	l.version = it.Version
	return l, nil
}

// Acquire takes the lease for holder for ttl if it is free, expired, or
// already holder's (a renewal keeps the epoch; a takeover increments it).
func Acquire(ctx context.Context, s Store, resource, holder string, ttl time.Duration, now time.Time) (Lease, error) {
	cur, err := GetLease(ctx, s, resource)
	if err != nil {
		return Lease{}, err
	}
	if cur.Holder != "" && cur.Holder != holder && now.Before(cur.Expires) {
		return Lease{}, &HeldError{Lease: cur}
	}
	next := Lease{Resource: resource, Holder: holder, Epoch: cur.Epoch, Expires: now.Add(ttl)}
	if cur.Holder != holder || now.After(cur.Expires) {
		next.Epoch = cur.Epoch + 1
	}
	b, _ := json.Marshal(next)
	v, err := s.Put(ctx, leaseTable, resource, b, cur.version)
	if errors.Is(err, ErrConflict) {
		// Someone else acquired between our read and write.
		again, gerr := GetLease(ctx, s, resource)
		if gerr == nil && again.Holder != holder {
			return Lease{}, &HeldError{Lease: again}
		}
		return Lease{}, err
	}
	if err != nil {
		return Lease{}, err
	}
	next.version = v
	return next, nil
}

// Renew extends a held lease; it fails if the lease was lost (expired and
// taken, or its epoch moved on).
func Renew(ctx context.Context, s Store, l Lease, ttl time.Duration, now time.Time) (Lease, error) {
	cur, err := GetLease(ctx, s, l.Resource)
	if err != nil {
		return Lease{}, err
	}
	if cur.Holder != l.Holder || cur.Epoch != l.Epoch {
		return Lease{}, fmt.Errorf("lease %s lost: now held by %s at epoch %d (ours was epoch %d)", l.Resource, cur.Holder, cur.Epoch, l.Epoch)
	}
	cur.Expires = now.Add(ttl)
	b, _ := json.Marshal(cur)
	v, err := s.Put(ctx, leaseTable, l.Resource, b, cur.version)
	if err != nil {
		return Lease{}, fmt.Errorf("renew lease %s: %w", l.Resource, err)
	}
	cur.version = v
	return cur, nil
}

// Release gives the lease up (it expires now) if still held by l's holder
// and epoch. The epoch is kept so the next holder's is higher.
func Release(ctx context.Context, s Store, l Lease) error {
	cur, err := GetLease(ctx, s, l.Resource)
	if err != nil {
		return err
	}
	if cur.Holder != l.Holder || cur.Epoch != l.Epoch {
		return nil
	}
	cur.Holder, cur.Expires = "", time.Time{}
	b, _ := json.Marshal(cur)
	_, err = s.Put(ctx, leaseTable, l.Resource, b, cur.version)
	return err
}

// Held is a lease kept alive in the background until Release.
type Held struct {
	Lease  Lease
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lost   error
}

// Hold acquires the lease and renews it every ttl/3. The returned context
// ends when the lease is lost (Lost says why) or the parent ends, so work
// done under it stops the moment another operator may have taken over.
func Hold(ctx context.Context, s Store, resource, holder string, ttl time.Duration) (context.Context, *Held, error) {
	l, err := Acquire(ctx, s, resource, holder, ttl, time.Now())
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Held{Lease: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(ttl / 3):
			}
			next, err := Renew(ctx, s, h.lease(), ttl, time.Now())
			if err != nil {
				if ctx.Err() == nil {
					h.mu.Lock()
					h.lost = err
					h.mu.Unlock()
					cancel()
				}
				return
			}
			h.mu.Lock()
			h.Lease = next
			h.mu.Unlock()
		}
	}()
	return ctx, h, nil
}

func (h *Held) lease() Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.Lease
}

// Lost reports why the lease was lost, or nil.
func (h *Held) Lost() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}

// Release stops renewing and gives the lease up, unless it was lost.
func (h *Held) Release(ctx context.Context, s Store) {
	h.cancel()
	<-h.done
	if h.Lost() == nil {
		_ = Release(ctx, s, h.lease())
	}
}
