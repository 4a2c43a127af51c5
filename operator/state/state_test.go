package state

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTemp(t *testing.T) *Bolt {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestPutIsCompareAndSwap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTemp(t)
	if _, err := s.Get(ctx, "t", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing item = %v", err)
	}
	v1, err := s.Put(ctx, "t", "k", []byte("a"), 0)
	if err != nil || v1 != 1 {
		t.Fatalf("create: %d, %v", v1, err)
	}
	if _, err := s.Put(ctx, "t", "k", []byte("b"), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over an existing item = %v, want ErrConflict", err)
	}
	v2, err := s.Put(ctx, "t", "k", []byte("b"), v1)
	if err != nil || v2 != 2 {
		t.Fatalf("update: %d, %v", v2, err)
	}
	if _, err := s.Put(ctx, "t", "k", []byte("c"), v1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict", err)
	}
	it, err := s.Get(ctx, "t", "k")
	if err != nil || string(it.Value) != "b" || it.Version != 2 {
		t.Fatalf("Get = %+v, %v", it, err)
	}
}

func TestConcurrentWritersOneWins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTemp(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Put(ctx, "t", "race", []byte("x"), 0); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d writers created the same item, want 1", wins)
	}
}

func TestListByPrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTemp(t)
	for _, k := range []string{"claims/2", "claims/1", "eligibility/1"} {
		if _, err := s.Put(ctx, "d", k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	items, err := s.List(ctx, "d", "claims/")
	if err != nil || len(items) != 2 || items[0].Key != "claims/1" || items[1].Key != "claims/2" {
		t.Fatalf("List = %+v, %v", items, err)
	}
	if items, err := s.List(ctx, "nosuch", ""); err != nil || len(items) != 0 {
		t.Fatalf("List of an empty table = %+v, %v", items, err)
	}
}

func TestLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTemp(t)
	now := time.Unix(1000, 0)
	a, err := Acquire(ctx, s, "deploy/claims", "op-a", 10*time.Second, now)
	if err != nil || a.Epoch != 1 {
		t.Fatalf("first acquire: %+v, %v", a, err)
	}
	_, err = Acquire(ctx, s, "deploy/claims", "op-b", 10*time.Second, now.Add(time.Second))
	var held *HeldError
	if !errors.As(err, &held) || held.Lease.Holder != "op-a" {
		t.Fatalf("second holder: %v, want HeldError naming op-a", err)
	}
	a, err = Renew(ctx, s, a, 10*time.Second, now.Add(5*time.Second))
	if err != nil || a.Epoch != 1 {
		t.Fatalf("renew: %+v, %v", a, err)
	}
	// After expiry another operator takes over with a higher epoch, and
	// the old holder can no longer renew.
	b, err := Acquire(ctx, s, "deploy/claims", "op-b", 10*time.Second, now.Add(20*time.Second))
	if err != nil || b.Epoch != 2 {
		t.Fatalf("takeover: %+v, %v", b, err)
	}
	if _, err := Renew(ctx, s, a, 10*time.Second, now.Add(21*time.Second)); err == nil {
		t.Fatal("a stale holder renewed its lease")
	}
	if err := Release(ctx, s, b); err != nil {
		t.Fatal(err)
	}
	c, err := Acquire(ctx, s, "deploy/claims", "op-c", 10*time.Second, now.Add(22*time.Second))
	if err != nil || c.Epoch != 3 {
		t.Fatalf("acquire after release: %+v, %v", c, err)
	}
}

func TestHoldRenewsUntilReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTemp(t)
	hctx, held, err := Hold(ctx, s, "failover", "op-a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past one TTL: only renewal keeps it
	if _, err := Acquire(ctx, s, "failover", "op-b", time.Second, time.Now()); !errors.Is(err, ErrHeld) {
		t.Fatalf("acquire while held and renewed = %v, want ErrHeld", err)
	}
	if hctx.Err() != nil || held.Lost() != nil {
		t.Fatalf("the held lease was lost: %v", held.Lost())
	}
	held.Release(ctx, s)
	if _, err := Acquire(ctx, s, "failover", "op-b", time.Second, time.Now()); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}
