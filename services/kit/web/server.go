package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout is how long in-flight requests get to finish after a
// SIGTERM. ECS waits 30s before SIGKILL by default; 10s leaves room for the
// background workers to drain after the server has stopped.
const ShutdownTimeout = 10 * time.Second

// Serve serves h on ln until ctx is cancelled, then stops accepting
// connections and waits up to shutdownTimeout for in-flight requests.
// It returns nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, l *slog.Logger, shutdownTimeout time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(l.Handler(), slog.LevelWarn),
		// Requests get a context of their own: a SIGTERM must let them
		// finish, not cancel them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	l.Info("http server listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	l.Info("http server draining", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("in-flight requests did not finish within %s: %w", shutdownTimeout, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	l.Info("http server stopped")
	return nil
}
