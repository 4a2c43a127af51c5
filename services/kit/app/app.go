// Package app runs a service process: it turns SIGTERM and SIGINT into
// context cancellation and decides the exit code in one place.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandemhq/tandem/services/kit/config"
)

// RunFunc is a service's entry point. It reads its configuration through
// lookup, logs to logOut, and returns nil after a clean shutdown once ctx is
// cancelled.
type RunFunc func(ctx context.Context, lookup config.Lookup, logOut io.Writer) error

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	// ExitConfig means the environment is wrong; restarting will not help
	// until an operator fixes it.
	ExitConfig = 2
)

// Main runs run with the process environment until SIGTERM or SIGINT and
// returns the exit code for main to pass to os.Exit.
func Main(service string, run RunFunc) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return ExitCode(service, run(ctx, os.LookupEnv, os.Stdout), os.Stderr)
}

// ExitCode reports err on stderr and maps it to an exit code.
func ExitCode(service string, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "%s: cannot start: invalid configuration\n", service)
		for _, p := range ce.Problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return ExitConfig
	}
	fmt.Fprintf(stderr, "%s: %v\n", service, err)
	return ExitFailed
}
