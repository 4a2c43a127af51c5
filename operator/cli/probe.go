package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/probe/localprobe"
)

type probeFlags struct {
	watch  bool
	rounds int
}

func newProbeCmd(o *Options) *cobra.Command {
	var f probeFlags
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Probe every region from several vantage points and print the verdicts",
		Long: `Probe the platform as the automatic-failover daemon does: HTTP through each
region's proxy, TCP to each proxy, PostgreSQL (role, replica lag, streaming)
and Redis (role, replication link) through each region's endpoints, from
several vantage points: "front-door" (a client's view of the active region)
and "from-<region>" (a prober placed in each region, probing every region).

A target is down only when a majority of the vantage points that see it have
each seen failover.failureThreshold failures in a row, and up again after
failover.successThreshold successes; probes run every failover.probeInterval.
A vantage point that sees every one of its checks fail suspects itself: its
results are shown but not counted. A region is down when its service path,
proxy or database is down; degraded when only its cache is down, a replica
is behind (failover.maxReplicaLag) or not replicating, or a target is slow.

Without --watch it runs enough rounds for the thresholds to decide (or
--rounds) and prints the final state. With --watch it probes until
interrupted: on a terminal the table is redrawn every round, otherwise one
line is printed per change. -o json prints the report (with --watch, one
report per line).`,
		Example: "  tandem probe\n  tandem probe --watch\n  tandem probe -o json | jq '.regions'",
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runProbe(cmd.Context(), o, f) },
	}
	cmd.Flags().BoolVarP(&f.watch, "watch", "w", false, "probe until interrupted, printing changes")
	cmd.Flags().IntVar(&f.rounds, "rounds", 0, "rounds to run without --watch (default: enough for the thresholds)")
	return cmd
}

var errEnoughRounds = errors.New("enough rounds")

func runProbe(ctx context.Context, o *Options, f probeFlags) error {
	if f.rounds < 0 || f.rounds > 1000 {
		return usagef("--rounds %d is out of range; use 1 to 1000", f.rounds)
	}
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	spec, err := o.spec()
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	secrets, err := localprobe.ReadSecrets(st.StateDir)
	if err != nil {
		return err
	}
	policy := probe.PolicyFor(spec.Failover)
	lp := localprobe.New(c, secrets, localprobe.RequestFor(spec), policy, nil)

	if !f.watch {
		n := f.rounds
		if n == 0 {
			n = max(policy.FailureThreshold, policy.SuccessThreshold)
		}
		var last probe.Report
		err := probe.Every(ctx, probe.SystemClock{}, policy.Interval, func(ctx context.Context) error {
			rep, err := lp.Round(ctx)
			if err != nil {
				return err
			}
			last = rep
			if rep.Round >= n {
				return errEnoughRounds
			}
			return nil
		})
		if !errors.Is(err, errEnoughRounds) {
			return err
		}
		if o.json() {
			return writeJSON(o.Out, last)
		}
		printProbe(o.Out, last)
		return nil
	}

	terminal := isTerminal(o.Out)
	enc := json.NewEncoder(o.Out)
	err = lp.Run(ctx, func(rep probe.Report) {
		switch {
		case o.json():
			_ = enc.Encode(rep)
		case terminal:
			fmt.Fprint(o.Out, "\x1b[H\x1b[2J")
			printProbe(o.Out, rep)
			fmt.Fprintln(o.Out, "\n(probing until interrupted)")
		default:
			for _, c := range rep.Changes {
				fmt.Fprintf(o.Out, "%s  %s\n", rep.At.Format("15:04:05.000"), c)
			}
		}
	})
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of --watch
	}
	return err
}

func printProbe(w io.Writer, rep probe.Report) {
	p := rep.Policy
	fmt.Fprintf(w, "round %d at %s: every %s; down after %d failures in a row at a majority of vantage points, up after %d successes\n\n",
		rep.Round, rep.At.Format("15:04:05.000"), p.Interval, p.FailureThreshold, p.SuccessThreshold)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tVERDICT\tSINCE\tWHY")
	for _, r := range rep.Regions {
		why := strings.Join(r.Reasons, "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Region, strings.ToUpper(string(r.Verdict)), r.Since.Format("15:04:05.000"), why)
	}
	tw.Flush()
	fmt.Fprintln(w)

	var vantages []string
	for _, v := range rep.Vantages {
		vantages = append(vantages, v.Name)
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TARGET\tKIND\tSTATE\tVOTES\t%s\n", strings.ToUpper(strings.Join(vantages, "\t")))
	for _, t := range rep.Targets {
		cells := make([]string, len(vantages))
		for i := range cells {
			cells[i] = "-"
		}
		for _, v := range t.Views {
			for i, name := range vantages {
				if name == v.Vantage {
					cells[i] = viewCell(v)
				}
			}
		}
		votes := fmt.Sprintf("%d up, %d down of %d", t.Up, t.Down, t.Voters)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, t.State, votes, strings.Join(cells, "\t"))
	}
	tw.Flush()

	for _, v := range rep.Vantages {
		if v.Suspect {
			fmt.Fprintf(w, "\nvantage point %s suspects itself: all %d of its checks failed, so none of them is counted\n", v.Name, v.Checked)
		}
	}
}

// viewCell is one vantage point's view of a target in a few words.
func viewCell(v probe.ViewReport) string {
	var s string
	r := v.Last
	if r.OK {
		s = "ok " + r.Latency.Round(time.Millisecond).String()
		if r.Role != "" {
			s += " " + r.Role
		}
		if r.Replicating != nil && !*r.Replicating {
			s += ", not replicating"
		}
		if r.Lag > 0 {
			s += ", lag " + r.Lag.Round(time.Millisecond).String()
		}
	} else {
		s = "FAIL"
		if v.Failures > 1 {
			s += fmt.Sprintf("×%d", v.Failures)
		}
		s += ": " + truncate(r.Error, 48)
	}
	if v.Discarded {
		s = "(not counted) " + s
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
