package boot

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/logging"
)

// TestServeStopsHTTPBeforeWorkers holds a request in flight while the
// runtime is cancelled: the workers must keep running until it has been
// answered, and Serve must return only after they have stopped.
func TestServeStopsHTTPBeforeWorkers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	rt := &Runtime{Log: logging.Discard(), base: config.Base{Host: "127.0.0.1", Port: port}}

	entered, release := make(chan struct{}), make(chan struct{})
	var answered, workerStopped atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		answered.Store(true)
	})
	var stoppedBeforeAnswer atomic.Bool
	worker := func(ctx context.Context) {
		<-ctx.Done()
		stoppedBeforeAnswer.Store(!answered.Load())
		workerStopped.Store(true)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, h, worker, worker) }()

	reqDone := make(chan error, 1)
	go func() {
		addr := "http://" + rt.base.Addr()
		for {
			resp, err := http.Get(addr)
			if err == nil {
				_ = resp.Body.Close()
				reqDone <- nil
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-entered
	cancel()
	time.Sleep(50 * time.Millisecond)
	if workerStopped.Load() {
		t.Fatal("workers stopped while a request was in flight")
	}
	close(release)
	if err := <-reqDone; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancellation")
	}
	if !workerStopped.Load() || stoppedBeforeAnswer.Load() {
		t.Errorf("worker stopped = %v, before the answer = %v; want stopped after it", workerStopped.Load(), stoppedBeforeAnswer.Load())
	}
}

func TestServeReportsTheAddressItCannotListenOn(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rt := &Runtime{Log: logging.Discard(), base: config.Base{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}}
	err = rt.Serve(t.Context(), http.NotFoundHandler())
	if want := "listen on " + ln.Addr().String() + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Serve on a taken port = %v, want an error starting %q", err, want)
	}
}

func TestCloseRunsLastOpenedFirst(t *testing.T) {
	t.Parallel()
	var order []int
	rt := &Runtime{}
	for i := range 3 {
		rt.onClose(func() { order = append(order, i) })
	}
	rt.Close()
	rt.Close()
	if !slices.Equal(order, []int{2, 1, 0}) {
		t.Errorf("close order = %v, want [2 1 0] once", order)
	}
}
