package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/autopilot"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/probe/localprobe"
	"github.com/tandemhq/tandem/stacks"
)

func newOperatorCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "The operator daemon",
	}
	var mode, listen string
	run := &cobra.Command{
		Use:   "run",
		Short: "Probe the platform continuously and apply the failover policy",
		Long: `Run the operator daemon against the platform of --state-dir: every
failover.probeInterval it probes every region from several vantage points
(quorum, hysteresis, self-suspicion; see 'tandem probe'), and when the active
region is voted down it applies the failover policy:

  off        watch and log only
  manual     alert (log) with the plan and the command to run
  automatic  fail over — planned when the old primary still answers,
             unplanned otherwise — at most once per failover.minInterval,
             and never while the state store cannot be read

It serves /healthz and /metrics (Prometheus) on --listen and logs one JSON line
per decision change. It runs until interrupted.`,
		Example: "  tandem operator run --mode automatic --listen 127.0.0.1:9464",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOperator(cmd.Context(), o, mode, listen, cmd.Flags().Changed("mode"))
		},
	}
	run.Flags().StringVar(&mode, "mode", "", "failover policy: off, manual or automatic (default: the stack's failover.mode)")
	run.Flags().StringVar(&listen, "listen", "127.0.0.1:9464", "address for /healthz and /metrics (loopback by default)")
	cmd.AddCommand(run)
	return cmd
}

func runOperator(ctx context.Context, o *Options, mode, listen string, modeGiven bool) error {
	spec, err := o.spec()
	if err != nil {
		return err
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
	}
	if !modeGiven {
		mode = spec.Failover.Mode
	}
	switch mode {
	case stacks.FailoverOff, stacks.FailoverManual, stacks.FailoverAutomatic:
	default:
		return usagef("--mode %q is not a policy; use off, manual or automatic", mode)
	}
	secrets, err := localprobe.ReadSecrets(o.StateDir)
	if err != nil {
		return err
	}
	policy := probe.PolicyFor(spec.Failover)
	prober := localprobe.New(c, secrets, localprobe.RequestFor(spec), policy, nil)
	log := slog.New(slog.NewJSONHandler(o.Out, nil))
	ap := autopilot.New(autopilot.Config{Mode: mode, MinInterval: spec.Failover.MinInterval.Duration, Regions: spec.RegionNames(),
		Request: failover.FromPolicy(failover.Request{}, spec), Log: log}, prober, o.failoverEngine(c), c)

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return usagef("--listen %s: %v", listen, err)
	}
	srv := &http.Server{Handler: ap.Handler(policy.Interval), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	log.Info("operator running", "mode", mode, "listen", l.Addr().String(), "probeInterval", policy.Interval.String(), "stateDir", o.StateDir)
	err = ap.Run(ctx, policy.Interval, nil)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("operator stopped: %w", err)
}
