package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/failover"
)

func newFailoverCmd(o *Options) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "failover --to REGION",
		Short: "Switch the platform over to another region",
		Long: `Fail the platform over to REGION as one ordered plan: fence routing at the
front door, drain and stop the old region's services, fence its database
(read-only, then stopped) and note the WAL position, wait until REGION's
replica has replayed up to that position (no acknowledged write lost), promote
the database and the cache in REGION, start REGION's services with the current
release, and route the front door to REGION. Prints each step with its
duration and the write unavailability.`,
		Example: "  tandem failover --to local-b\n  tandem failover --to local-b -o json",
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runFailover(cmd.Context(), o, to) },
	}
	cmd.Flags().StringVar(&to, "to", "", "region to fail over to (required)")
	return cmd
}

func runFailover(ctx context.Context, o *Options, to string) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	if to == "" {
		return usagef("--to is required; this stack has regions %s", strings.Join(spec.RegionNames(), ", "))
	}
	if _, ok := spec.Region(to); !ok {
		return usagef("unknown region %q; this stack has regions %s", to, strings.Join(spec.RegionNames(), ", "))
	}
	loaded := o.Stack
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	if o.Stack != loaded {
		if spec, err = o.spec(); err != nil {
			return err
		}
		if _, ok := spec.Region(to); !ok {
			return usagef("unknown region %q; the platform's stack has regions %s", to, strings.Join(spec.RegionNames(), ", "))
		}
	}
	if active, err := c.ActiveRegion(ctx); err == nil && active == to {
		return usagef("%s is already the active region; nothing to fail over", to)
	}
	eng := &failover.Engine{Routing: c, Fleets: c, Database: c, Cache: c}
	if !o.json() {
		eng.OnStep = func(s failover.Step) {
			fmt.Fprintf(o.Out, "%s  %-28s %8s  %s\n", s.Started.Format("15:04:05.000"), s.Name, s.Duration.Round(1e6), s.Detail)
		}
	}
	res, err := eng.Run(ctx, failover.Request{To: to, Regions: spec.RegionNames(), CatchUpTimeout: spec.Failover.CatchUpTimeout.Duration})
	if o.json() && res != nil {
		_ = writeJSON(o.Out, res)
	}
	if err != nil {
		return err
	}
	if !o.json() {
		fmt.Fprintf(o.Out, "failover %s -> %s done in %s; writes unavailable for %s\n", res.From, res.To, res.Duration.Round(1e6), res.Unavailable.Round(1e6))
	}
	return nil
}
