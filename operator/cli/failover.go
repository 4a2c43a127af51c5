package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/stacks"
)

type failoverFlags struct {
	to        string
	planned   bool
	unplanned bool
	force     bool
	yes       bool
}

func newFailoverCmd(o *Options) *cobra.Command {
	var f failoverFlags
	cmd := &cobra.Command{
		Use:   "failover --to REGION",
		Short: "Fail the platform over to another region (planned switchover or unplanned failover)",
		Long: `Fail the whole platform over to REGION as one journaled plan: fence routing at
the front door (mandatory), drain and stop the old region's services, fence its
database (read-only, sessions ended, endpoint closed, stopped, and marked so
that, restarted by anyone, it comes up as a standby) and cache, then promote
REGION's database and cache, start its services with the current release,
route the front door to it and prove it takes a write.

--planned (a switchover) waits for REGION's replica to replay up to the old
primary's fence position: no acknowledged write is lost. --unplanned is for an
old region that cannot be reached: what can be fenced is fenced, the routing
fence is mandatory, and writes the replica never received are lost (the plan
predicts how much). With neither flag, tandem chooses planned when the old
primary is reachable and otherwise refuses, naming --unplanned.

Readiness checks (replica lag above failover.maxReplicaLag, a replica that
is not streaming or cannot be read) refuse the failover; --force overrides
them. On a terminal tandem shows the plan and asks before acting; --yes skips
the question. If the operator dies mid-way, 'tandem failover resume' finishes
the plan. To come back later: 'tandem reprotect OLD-REGION', then a planned
failover to it.`,
		Example: `  tandem failover plan --to local-b
  tandem failover --to local-b --yes
  tandem failover --to local-b --unplanned --yes      # local-a is gone
  tandem failover resume`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFailover(cmd.Context(), o, cmd.InOrStdin(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "region to fail over to (required)")
	fl.BoolVar(&f.planned, "planned", false, "switchover: fence, wait for the replica to catch up (RPO 0), promote")
	fl.BoolVar(&f.unplanned, "unplanned", false, "the old region is unreachable: fence what can be fenced and promote without waiting")
	fl.BoolVar(&f.force, "force", false, "proceed although readiness checks refuse (replica lag, replica not streaming)")
	fl.BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	cmd.AddCommand(newFailoverPlanCmd(o), newFailoverResumeCmd(o), newFailoverStatusCmd(o))
	return cmd
}

func (o *Options) failoverRequest(ctx context.Context, f failoverFlags) (*stacks.Spec, *local.Client, failover.Request, error) {
	spec, err := o.spec()
	if err != nil {
		return nil, nil, failover.Request{}, err
	}
	if f.planned && f.unplanned {
		return nil, nil, failover.Request{}, usagef("--planned and --unplanned exclude each other")
	}
	if f.to == "" {
		return nil, nil, failover.Request{}, usagef("--to is required; this stack has regions %s", strings.Join(spec.RegionNames(), ", "))
	}
	if _, ok := spec.Region(f.to); !ok {
		return nil, nil, failover.Request{}, usagef("unknown region %q; this stack has regions %s", f.to, strings.Join(spec.RegionNames(), ", "))
	}
	loaded := o.Stack
	c, err := o.dial(ctx)
	if err != nil {
		return nil, nil, failover.Request{}, err
	}
	if o.Stack != loaded {
		if spec, err = o.spec(); err != nil {
			return nil, nil, failover.Request{}, err
		}
		if _, ok := spec.Region(f.to); !ok {
			return nil, nil, failover.Request{}, usagef("unknown region %q; the platform's stack has regions %s", f.to, strings.Join(spec.RegionNames(), ", "))
		}
	}
	if active, err := c.ActiveRegion(ctx); err == nil && active == f.to {
		return nil, nil, failover.Request{}, usagef("%s is already the active region; nothing to fail over", f.to)
	}
	req := failover.Request{To: f.to, Force: f.force}
	switch {
	case f.planned:
		req.Mode = failover.Planned
	case f.unplanned:
		req.Mode = failover.Unplanned
	}
	return spec, c, failover.FromPolicy(req, spec), nil
}

func (o *Options) failoverEngine(c *local.Client) *failover.Engine {
	host, _ := os.Hostname()
	return &failover.Engine{Routing: c, Fleets: c, Database: c, Cache: c, Store: c, Holder: fmt.Sprintf("%s:%d", host, os.Getpid())}
}

func runFailover(ctx context.Context, o *Options, in io.Reader, f failoverFlags) error {
	spec, c, req, err := o.failoverRequest(ctx, f)
	if err != nil {
		return err
	}
	eng := o.failoverEngine(c)
	plan, err := eng.MakePlan(ctx, req)
	if err != nil {
		return err
	}
	if !o.json() {
		printFailoverPlan(o.Out, plan)
	}
	if len(plan.Refusals) > 0 && !req.Force {
		return fmt.Errorf("%w: %s (--force overrides)", failover.ErrRefused, strings.Join(plan.Refusals, "; "))
	}
	if open := o.openDeploys(ctx, c, spec); len(open) > 0 && !req.Force {
		return fmt.Errorf("%w: %s; a failover would strand it — finish or abort it first (`tandem deploy abort SERVICE --wait`), or --force", failover.ErrRefused, strings.Join(open, "; "))
	}
	if !f.yes && isTerminal(o.Out) && isTerminalReader(in) {
		fmt.Fprintf(o.Out, "\nfail the platform over from %s to %s (%s)? [y/N] ", plan.From, plan.To, plan.Mode)
		answer, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &ExitCodeError{Code: ExitError, Err: fmt.Errorf("failover not confirmed; nothing changed")}
		}
	}
	if _, err := eng.Start(ctx, req); err != nil {
		return err
	}
	return o.runFailoverJournal(ctx, eng)
}

func (o *Options) runFailoverJournal(ctx context.Context, eng *failover.Engine) error {
	if !o.json() {
		eng.OnStep = func(_ *failover.Failover, s failover.Step) {
			fmt.Fprintf(o.Out, "%s  %-30s %8s  %s\n", s.Started.Format("15:04:05.000"), s.Name, s.Duration.Round(time.Millisecond), s.Detail)
		}
	}
	res, err := eng.Run(ctx)
	if o.json() && res != nil {
		_ = writeJSON(o.Out, res)
	}
	if err != nil {
		return err
	}
	if !o.json() {
		fmt.Fprintf(o.Out, "failover %s: %s -> %s (%s) done in %s; writes unavailable for %s; WAL lost: %d bytes\n",
			res.ID, res.From, res.To, res.Mode, res.Ended.Sub(res.Started).Round(time.Millisecond), res.Unavailable.Round(time.Millisecond), res.LostBytes)
	}
	return nil
}

func printFailoverPlan(w io.Writer, p *failover.Plan) {
	fmt.Fprintf(w, "plan: %s failover %s -> %s\n", p.Mode, p.From, p.To)
	fmt.Fprintf(w, "old primary reachable: %v; replica in %s: %d bytes behind (%.1fs), streaming %v\n", p.Reachable, p.To, p.Lag.Bytes, p.Lag.Seconds, p.Lag.Streaming)
	fmt.Fprintf(w, "predicted RPO: %s\n\n", p.PredictedRPO)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tPRECONDITION / ACTION")
	for i, s := range p.Steps {
		name := s.Name
		if s.BestEffort {
			name += " (best effort)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", i+1, name, s.Precondition)
	}
	tw.Flush()
	for _, r := range p.Refusals {
		fmt.Fprintf(w, "REFUSED: %s\n", r)
	}
}

func newFailoverPlanCmd(o *Options) *cobra.Command {
	var f failoverFlags
	cmd := &cobra.Command{
		Use:   "plan --to REGION",
		Short: "Print a failover's steps, preconditions and predicted RPO from live replication lag; change nothing",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, req, err := o.failoverRequest(cmd.Context(), f)
			if err != nil {
				return err
			}
			plan, err := o.failoverEngine(c).MakePlan(cmd.Context(), req)
			if err != nil {
				return err
			}
			if o.json() {
				if err := writeJSON(o.Out, plan); err != nil {
					return err
				}
			} else {
				printFailoverPlan(o.Out, plan)
			}
			if len(plan.Refusals) > 0 {
				return fmt.Errorf("%w: this failover would be refused: %s (--force overrides)", failover.ErrRefused, strings.Join(plan.Refusals, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&f.to, "to", "", "region to fail over to (required)")
	cmd.Flags().BoolVar(&f.planned, "planned", false, "plan a switchover")
	cmd.Flags().BoolVar(&f.unplanned, "unplanned", false, "plan an unplanned failover")
	return cmd
}

func newFailoverResumeCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "Finish an open failover whose operator died",
		Long: `Finish the open failover from the step its journal says is next. A failover
whose operator is still alive holds the failover lease; resume then refuses,
naming it. A dead operator's lease lapses after deploy.leaseTTL.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			eng := o.failoverEngine(c)
			f, err := eng.Current(cmd.Context())
			if err != nil {
				return err
			}
			if f.Status != failover.StatusRunning {
				return fmt.Errorf("%w to resume: the latest failover %s (%s -> %s) is %s", failover.ErrNoFailover, f.ID, f.From, f.To, f.Status)
			}
			// Wait out a dead operator's lease.
			deadline := time.Now().Add(f.Request.LeaseTTL + 5*time.Second)
			for {
				err := o.runFailoverJournal(cmd.Context(), eng)
				if err == nil || !errors.Is(err, state.ErrHeld) || time.Now().After(deadline) {
					return err
				}
				time.Sleep(500 * time.Millisecond)
			}
		},
	}
}

func newFailoverStatusCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the open or latest failover with its steps",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			f, err := o.failoverEngine(c).Current(cmd.Context())
			if err != nil {
				return err
			}
			if o.json() {
				return writeJSON(o.Out, f)
			}
			progress := fmt.Sprintf("next step %d of %d", f.Next+1, len(f.Steps))
			if f.Next >= len(f.Steps) {
				progress = fmt.Sprintf("all %d steps done", len(f.Steps))
			}
			fmt.Fprintf(o.Out, "failover %s: %s -> %s (%s), %s, %s, epoch %d, fence position %s\n",
				f.ID, f.From, f.To, f.Mode, f.Status, progress, f.Epoch, f.FencePosition)
			for i, s := range f.Steps {
				mark := " "
				if s.Done {
					mark = "✓"
				}
				fmt.Fprintf(o.Out, "  %s %2d %-30s %s\n", mark, i+1, s.Name, s.Detail)
			}
			return nil
		},
	}
}

// isTerminalReader reports whether r is a terminal (a person can answer).
func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && isTerminal(f)
}

// openDeploys lists the deploys that are still open, one line each.
func (o *Options) openDeploys(ctx context.Context, c *local.Client, spec *stacks.Spec) []string {
	eng := o.engine(c)
	var open []string
	for _, svc := range spec.ServiceNames() {
		if d, err := eng.Current(ctx, svc); err == nil && d.Open() {
			open = append(open, fmt.Sprintf("deploy %s of %s %s is %s in phase %s", d.ID, svc, d.Request.Version, d.Status, d.Phase))
		}
	}
	return open
}
