package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/local"
)

const faultNames = "kill-region, kill-db, kill-cache, partition, slow-db, slow-proxy, heal"

func newFaultCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Inject faults into the local platform to rehearse outages: " + faultNames,
		Long: `Inject a fault into the local platform, to rehearse an outage and watch the
prober and the failover react. Without a subcommand, show the faults in force.

  kill-region REGION  SIGKILL every process of REGION: its service tasks (the
                      supervisor does not restart them) and its PostgreSQL and
                      redis-server in both zones. Its proxy stays up with
                      nothing behind it and answers 503. Heal does not undo it.
  kill-db REGION      SIGKILL the database server behind REGION's endpoint (a
                      zone failure). With database.multiAZ its standby in
                      the other zone takes over and the failed server is
                      rebuilt as the new standby; without it the database
                      stays down.
  kill-cache REGION   the same for REGION's redis-server (cache.replicas).
  partition REGION    cut REGION off from the other regions and the front door
                      while its processes keep running: its proxy stops
                      listening, its database and cache endpoints refuse and
                      drop connections, and replication to and from other
                      regions stops (replication inside REGION goes on).
  slow-db REGION      add latency (--delay) to every answer of REGION's
                      database endpoint, open connections included.
  slow-proxy REGION   hold every request to REGION's proxy back (--delay)
                      before routing it: the front door and direct callers
                      wait; the services and the database are untouched.
  heal                undo every partition and delay.

Each prints what it did; -o json prints it as a document.`,
		Example: "  tandem fault kill-region local-a\n  tandem fault kill-db local-a\n  tandem fault partition local-b\n  tandem fault slow-db local-a --delay 300ms\n  tandem fault slow-proxy local-a --delay 3s\n  tandem fault heal\n  tandem fault",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown fault %q; use one of %s (see `%s --help`)", args[0], faultNames, cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return runFaults(cmd.Context(), o) },
	}
	slowDB := newSlowFaultCmd(o, "slow-db", "Add latency to a region's database endpoint", "300ms", 250*time.Millisecond, (*local.Client).SlowDatabase)
	slowProxy := newSlowFaultCmd(o, "slow-proxy", "Hold requests to a region's proxy back before routing them", "3s", time.Second, (*local.Client).SlowProxy)
	cmd.AddCommand(
		&cobra.Command{
			Use:     "kill-region REGION",
			Short:   "Kill every process of a region (a region outage)",
			Example: "  tandem fault kill-region local-a",
			Args:    exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runFault(cmd.Context(), o, args[0], true, func(ctx context.Context, c *local.Client, region string) (local.FaultReport, error) {
					return c.KillRegion(ctx, region)
				})
			},
		},
		&cobra.Command{
			Use:     "kill-db REGION",
			Short:   "Kill a region's database server (a zone failure; the in-region standby takes over)",
			Example: "  tandem fault kill-db local-a",
			Args:    exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runFault(cmd.Context(), o, args[0], true, func(ctx context.Context, c *local.Client, region string) (local.FaultReport, error) {
					return c.KillDatabase(ctx, region)
				})
			},
		},
		&cobra.Command{
			Use:     "kill-cache REGION",
			Short:   "Kill a region's redis-server (a zone failure; the in-region replica takes over)",
			Example: "  tandem fault kill-cache local-a",
			Args:    exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runFault(cmd.Context(), o, args[0], true, func(ctx context.Context, c *local.Client, region string) (local.FaultReport, error) {
					return c.KillCache(ctx, region)
				})
			},
		},
		&cobra.Command{
			Use:     "partition REGION",
			Short:   "Cut a region off from the others and from the front door",
			Example: "  tandem fault partition local-b",
			Args:    exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runFault(cmd.Context(), o, args[0], true, func(ctx context.Context, c *local.Client, region string) (local.FaultReport, error) {
					return c.Partition(ctx, region)
				})
			},
		},
		slowDB,
		slowProxy,
		&cobra.Command{
			Use:   "heal",
			Short: "Undo partitions and database delays (a killed region stays killed)",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runFault(cmd.Context(), o, "", false, func(ctx context.Context, c *local.Client, _ string) (local.FaultReport, error) {
					return c.Heal(ctx)
				})
			},
		},
	)
	return cmd
}

// newSlowFaultCmd is a fault that adds latency (--delay) in a region.
func newSlowFaultCmd(o *Options, name, short, example string, def time.Duration,
	apply func(*local.Client, context.Context, string, time.Duration) (local.FaultReport, error)) *cobra.Command {
	var delay time.Duration
	cmd := &cobra.Command{
		Use:     name + " REGION",
		Short:   short,
		Example: fmt.Sprintf("  tandem fault %s local-a --delay %s", name, example),
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if delay <= 0 || delay > local.MaxDatabaseDelay {
				return usagef("--delay %s is out of range; use more than 0 and at most %s (heal removes it)", delay, local.MaxDatabaseDelay)
			}
			return runFault(cmd.Context(), o, args[0], true, func(ctx context.Context, c *local.Client, region string) (local.FaultReport, error) {
				return apply(c, ctx, region, delay)
			})
		},
	}
	cmd.Flags().DurationVar(&delay, "delay", def, "latency added")
	return cmd
}

// runFault checks the region against the stack (bad input changes
// nothing), then applies the fault through the platform's control API.
func runFault(ctx context.Context, o *Options, region string, regional bool, apply func(context.Context, *local.Client, string) (local.FaultReport, error)) error {
	check := func() error {
		if region == "" && !regional {
			return nil
		}
		spec, err := o.spec()
		if err != nil {
			return err
		}
		if _, ok := spec.Region(region); !ok {
			return usagef("unknown region %q; this stack has regions %s", region, strings.Join(spec.RegionNames(), ", "))
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	loaded := o.Stack
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	if o.Stack != loaded {
		if err := check(); err != nil {
			return err
		}
	}
	rep, err := apply(ctx, c, region)
	if err != nil {
		return err
	}
	if o.json() {
		return writeJSON(o.Out, rep)
	}
	title := rep.Fault
	if rep.Region != "" {
		title += " " + rep.Region
	}
	fmt.Fprintln(o.Out, title+":")
	for _, a := range rep.Actions {
		fmt.Fprintln(o.Out, "  - "+a)
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(o.Out, "  note: "+n)
	}
	return nil
}

func runFaults(ctx context.Context, o *Options) error {
	c, err := local.Dial(o.StateDir)
	if err != nil {
		return err
	}
	f, err := c.Faults(ctx)
	if err != nil {
		return err
	}
	if o.json() {
		return writeJSON(o.Out, f)
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tKILLED\tPARTITIONED\tDATABASE DELAY\tPROXY DELAY")
	for _, r := range f.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Region, yesNo(r.Killed), yesNo(r.Partitioned), orDash(r.DatabaseDelay), orDash(r.ProxyDelay))
	}
	tw.Flush()
	fmt.Fprintf(o.Out, "\ninject one with `tandem fault <%s>`\n", strings.ReplaceAll(faultNames, ", ", "|"))
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.String()
}
