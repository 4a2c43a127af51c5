package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/local"
)

func newDownCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the local platform and everything it started",
		Long: `Stop the local platform of --state-dir: services, proxies, front door, redis and
PostgreSQL. It returns once nothing of the platform is running. Running it when
no platform is up is not an error; it also cleans up after a platform that was
killed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDown(cmd.Context(), o) },
	}
}

func runDown(ctx context.Context, o *Options) error {
	c, err := local.Dial(o.StateDir)
	if err != nil {
		n := local.Cleanup(o.StateDir)
		if local.Running(o.StateDir) {
			return fmt.Errorf("a platform holds %s but does not answer on its control socket; stop its process (pid in %s/platform.lock)", o.StateDir, o.StateDir)
		}
		if n > 0 {
			fmt.Fprintf(o.Out, "no platform answered in %s; killed %d leftover process(es)\n", o.StateDir, n)
		} else {
			fmt.Fprintf(o.Out, "no platform is up in %s\n", o.StateDir)
		}
		return nil
	}
	if err := c.Shutdown(ctx); err != nil {
		return fmt.Errorf("ask the platform to stop: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for local.Running(o.StateDir) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the platform in %s did not stop within 2 minutes", o.StateDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(o.Out, "platform in %s stopped\n", o.StateDir)
	return nil
}
