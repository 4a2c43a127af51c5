package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/gameday"
	"github.com/tandemhq/tandem/operator/local"
)

type gamedayFlags struct {
	rate    int
	steady  time.Duration
	service string
	version string
	to      string
}

func newGamedayCmd(o *Options) *cobra.Command {
	var f gamedayFlags
	cmd := &cobra.Command{
		Use:   "gameday",
		Short: "Rehearse a deploy and a region failover under load, then report",
		Long: `Run the whole rehearsal on the embedded local platform: bring it up, put
steady load on the front door (eligibility determinations and claim
submissions), deploy a new version of a service blue/green under that load,
fail the platform over to the secondary region under that load, read back every
acknowledged claim through the front door, print a report (timeline, requests
sent and failed per phase, failover duration, acknowledged claims missing), and
take the platform down.

Exit 0 only if the deploy was promoted with no failed request, the failover
completed and no acknowledged claim is missing; 1 if not; 2 for bad input.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGameday(cmd.Context(), o, f) },
	}
	cmd.Flags().IntVar(&f.rate, "rate", 300, "offered load in requests per second (10 to 5000)")
	cmd.Flags().DurationVar(&f.steady, "steady", 5*time.Second, "steady-load time before and after the deploy and the failover (1s to 10m)")
	cmd.Flags().StringVar(&f.service, "service", "claims", "service to deploy")
	cmd.Flags().StringVar(&f.version, "version", "v2", "version to deploy")
	cmd.Flags().StringVar(&f.to, "to", "", "region to fail over to (default: the stack's secondary region)")
	return cmd
}

func runGameday(ctx context.Context, o *Options, f gamedayFlags) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	if f.rate < 10 || f.rate > 5000 {
		return usagef("--rate %d is out of range; use 10 to 5000 requests per second", f.rate)
	}
	if f.steady < time.Second || f.steady > 10*time.Minute {
		return usagef("--steady %s is out of range; use 1s to 10m", f.steady)
	}
	if _, ok := spec.Service(f.service); !ok {
		return usagef("unknown service %q; this stack has %v", f.service, spec.ServiceNames())
	}
	if f.to != "" {
		if r, ok := spec.Region(f.to); !ok || r.Role == "primary" {
			return usagef("--to %q must be a secondary region of this stack (%v)", f.to, spec.RegionNames())
		}
	}
	if local.Running(o.StateDir) {
		return usagef("%v in %s; gameday brings up its own platform: run `tandem down` first, or use another --state-dir", local.ErrAlreadyUp, o.StateDir)
	}
	var progress io.Writer = o.Out
	if o.json() {
		progress = o.Err
	}
	rep, err := gameday.Run(ctx, gameday.Options{Stack: o.Stack, Spec: spec, StateDir: o.StateDir, BinDir: o.BinDir, Logger: o.logger(),
		Progress: progress, Rate: f.rate, Steady: f.steady, Service: f.service, Version: f.version, To: f.to})
	if err != nil {
		if errors.Is(err, local.ErrAlreadyUp) {
			return &UsageError{err}
		}
		return fmt.Errorf("gameday could not run: %w", err)
	}
	if o.json() {
		if err := writeJSON(o.Out, rep); err != nil {
			return err
		}
	} else {
		rep.Print(o.Out)
	}
	if !rep.Passed {
		return &ExitCodeError{Code: ExitError, Err: errors.New("gameday failed; see the report")}
	}
	return nil
}
