// Package apptest runs a service's Run in tests the way the platform does:
// from an environment, on a port of its own, stopped by cancellation.
package apptest

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tandemhq/tandem/services/kit/app"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Timeout bounds how long a service may take to become ready and to stop.
const Timeout = 20 * time.Second

// FreeAddr returns a loopback address that nothing listens on: a port the
// kernel just handed out and released, free to start a service on, or to
// stand for a dependency that is down.
func FreeAddr(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()
	return addr
}

// Start runs run with env in the background, logging nowhere. The returned
// stop cancels it and fails the test unless Run returns nil within Timeout;
// the test's cleanup cancels it too when stop was not called.
func Start(t testing.TB, run app.RunFunc, env config.Lookup) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- run(ctx, env, io.Discard) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run = %v after cancellation, want nil", err)
			}
		case <-time.After(Timeout):
			t.Fatal("Run did not return after cancellation")
		}
	}
}

// WaitReady polls the readiness endpoint under baseURL until it answers 200
// and fails the test if it does not within Timeout.
func WaitReady(t testing.TB, baseURL string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		resp, err := http.Get(baseURL + web.ReadinessPath)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready: %v", baseURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
