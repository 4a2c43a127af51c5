package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

type deployFlags struct {
	version   string
	setEnv    []string
	steps     string
	count     int
	skip      bool
	wait      bool
	dryRun    bool
	requestID string
	// countGiven is set when --count was passed.
	countGiven bool
}

func newDeployCmd(o *Options) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "deploy SERVICE --version V",
		Short: "Blue/green deploy a service with analysis and automatic rollback",
		Long: `Deploy a new version of SERVICE in the active region, blue/green. The deploy is
a journaled state machine in the platform's state store:

  preflight     the live color carries 100% and is healthy; the deploy lease is free
  launch        start the new version's tasks on the idle color
  wait-healthy  every new task passes health checks        (deadline: healthyTimeout)
  test-traffic  a smoke request pinned to the new color by X-Tandem-Color
  shift         for each step: move weight, read it back (drift halts the deploy)
  analysis      judge the new color against the old one and absolute limits;
                too few samples is inconclusive and holds (deadline: analysisTimeout)
  bake          the new color carries 100%, still judged
  promote       after scaleDownDelay, drain and stop the old color

A breach, a failed smoke check or a missed deadline rolls back: all traffic to
the old color (read back), then the new color is drained and stopped. With
deploy.onDeadline "hold", a deadline holds traffic and alerts instead.

Without --wait the deploy runs in the background and this returns at once;
follow it with 'tandem deploy watch SERVICE'. A crashed operator leaves the
deploy open: 'tandem deploy resume SERVICE' continues it where it stopped.

Exit codes with --wait: 0 promoted, 3 rolled back or aborted, 4 refused by
preflight (nothing changed), 2 bad input, 1 other errors (including a deploy
halted on drift or held for a person).`,
		Example: `  tandem deploy claims --version v2 --wait
  tandem deploy claims --version v3 --set-env TANDEM_FAULT_ERROR_RATE=0.2 --wait   # exits 3
  tandem deploy claims --version v2 --dry-run
  tandem deploy claims --version v2 --request-id "$CI_PIPELINE_ID" --wait -o json
  tandem deploy status claims`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.countGiven = cmd.Flags().Changed("count")
			return runDeploy(cmd.Context(), o, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.version, "version", "", "version to deploy (required)")
	fl.StringArrayVar(&f.setEnv, "set-env", nil, "extra environment variable for the new version, K=V (repeatable)")
	fl.StringVar(&f.steps, "steps", "", "new-color weights to shift through, ending at 100 (default: the stack's deploy.steps)")
	fl.IntVar(&f.count, "count", 0, "tasks of the new version (default: the service's count, capped by local.maxTasks)")
	fl.BoolVar(&f.skip, "skip-analysis", false, "promote on health alone, without judging traffic (for a service with no traffic)")
	fl.BoolVar(&f.wait, "wait", false, "run the deploy here and wait for its end; the exit code says how it ended")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan (phases, gates, deadlines, best and worst case) and change nothing")
	fl.StringVar(&f.requestID, "request-id", "", "idempotency key: a deploy already started with this id is returned instead of starting another (for retried CI jobs)")
	cmd.AddCommand(newDeployStatusCmd(o), newDeployWatchCmd(o), newDeployHistoryCmd(o),
		newDeployControlCmd(o, deploy.IntentPause, "Pause a deploy: traffic stays where it is until resume"),
		newDeployControlCmd(o, deploy.IntentResume, "Resume a paused, held or halted deploy, or one whose operator crashed"),
		newDeployControlCmd(o, deploy.IntentPromote, "Skip the remaining analysis: shift to 100% and promote"),
		newDeployControlCmd(o, deploy.IntentAbort, "Abort a deploy: all traffic back to the old color, new color stopped"),
		newDeployRollbackCmd(o), newDeployExecCmd(o))
	return cmd
}

var platformEnv = map[string]bool{"PORT": true, "HOST": true, "DATABASE_URL": true, "DATABASE_READ_URL": true, "REDIS_URL": true,
	"TANDEM_REGION": true, "TANDEM_COLOR": true, "TANDEM_VERSION": true}

func parseDeployFlags(spec *stacks.Spec, service string, f deployFlags) (deploy.Request, error) {
	svc, ok := spec.Service(service)
	if !ok {
		return deploy.Request{}, usagef("unknown service %q; this stack has %s", service, strings.Join(spec.ServiceNames(), ", "))
	}
	if f.version == "" {
		return deploy.Request{}, usagef("--version is required, e.g. --version v2")
	}
	if strings.ContainsAny(f.version, " \t\n/") || len(f.version) > 64 {
		return deploy.Request{}, usagef("--version %q must be at most 64 characters without spaces or slashes", f.version)
	}
	env := map[string]string{}
	for _, kv := range f.setEnv {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " =") {
			return deploy.Request{}, usagef("--set-env %q must be KEY=VALUE", kv)
		}
		if platformEnv[k] {
			return deploy.Request{}, usagef("--set-env %s: the platform sets %s itself", k, k)
		}
		env[k] = v
	}
	steps := spec.Deploy.Steps
	if f.steps != "" {
		steps = nil
		for _, s := range strings.Split(f.steps, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return deploy.Request{}, usagef("--steps %q: %q is not a whole number", f.steps, s)
			}
			steps = append(steps, n)
		}
		if err := stacks.ValidateSteps(steps); err != nil {
			return deploy.Request{}, usagef("--steps %q: %v", f.steps, err)
		}
	}
	count := f.count
	if !f.countGiven {
		count = min(svc.Count, spec.Local.MaxTasks)
	}
	if count < 1 || count > spec.Local.MaxTasks {
		return deploy.Request{}, usagef("--count %d is out of range; use 1 to %d (local.maxTasks)", count, spec.Local.MaxTasks)
	}
	if len(f.requestID) > 128 {
		return deploy.Request{}, usagef("--request-id is longer than 128 characters")
	}
	policy := deploy.PolicyFrom(spec.Deploy)
	policy.SkipAnalysis = f.skip
	return deploy.Request{Service: service, Version: f.version, Env: env, Count: count, Steps: steps, RequestID: f.requestID, Policy: policy}, nil
}

// engine builds a deploy engine over the platform of the state directory.
func (o *Options) engine(c *local.Client) *deploy.Engine {
	host, _ := os.Hostname()
	return &deploy.Engine{Traffic: c, Fleet: c, Metrics: c, Test: c, Store: c, Holder: fmt.Sprintf("%s:%d", host, os.Getpid())}
}

func runDeploy(ctx context.Context, o *Options, service string, f deployFlags) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	req, err := parseDeployFlags(spec, service, f)
	if err != nil {
		return err
	}
	if f.dryRun {
		req.Region = "(active region)"
		if local.Running(o.StateDir) {
			loaded := o.Stack
			c, err := o.dial(ctx)
			if err != nil {
				return err
			}
			if o.Stack != loaded {
				if spec, err = o.spec(); err != nil {
					return err
				}
				if req, err = parseDeployFlags(spec, service, f); err != nil {
					return err
				}
			}
			if r, err := c.ActiveRegion(ctx); err == nil {
				req.Region = r
			}
		}
		plan := deploy.MakePlan(req, spec.Deploy.DrainTimeout.Duration)
		if o.json() {
			return writeJSON(o.Out, plan)
		}
		printPlan(o.Out, plan)
		return nil
	}
	loaded := o.Stack
	c, err := o.dial(ctx)
	if err != nil {
		return err
	}
	if o.Stack != loaded {
		// The platform runs another stack: judge the request by its policy.
		if spec, err = o.spec(); err != nil {
			return err
		}
		if req, err = parseDeployFlags(spec, service, f); err != nil {
			return err
		}
	}
	if f, err := o.failoverEngine(c).Current(ctx); err == nil && f.Status == failover.StatusRunning {
		return fmt.Errorf("%w: failover %s (%s -> %s) is in progress; finish it first (`tandem failover resume`)", deploy.ErrPreflight, f.ID, f.From, f.To)
	}
	if req.Region, err = c.ActiveRegion(ctx); err != nil {
		return err
	}
	eng := o.engine(c)
	d, started, err := eng.Start(ctx, req)
	if err != nil {
		return err
	}
	if !started && !o.json() {
		fmt.Fprintf(o.Out, "request id %s already started deploy %s of %s %s (%s)\n", req.RequestID, d.ID, d.Request.Service, d.Request.Version, d.Status)
	}
	if f.wait {
		return o.execute(ctx, eng, service, !started)
	}
	if started {
		if err := o.spawnExecutor(service); err != nil {
			return fmt.Errorf("deploy %s is journaled but its executor did not start (%v); run `tandem deploy resume %s`", d.ID, err, service)
		}
	}
	if o.json() {
		return writeJSON(o.Out, d)
	}
	if started {
		fmt.Fprintf(o.Out, "deploy %s of %s %s started in %s (%s -> %s); follow it with `tandem deploy watch %s`\n",
			d.ID, service, req.Version, req.Region, d.From, d.To, service)
	}
	return nil
}

// execute runs (or, when another operator runs it, follows) the service's
// open deploy until it ends or goes idle, printing events, and maps the
// outcome to an error with the right exit code.
func (o *Options) execute(ctx context.Context, eng *deploy.Engine, service string, follow bool) error {
	shown := 0
	if !o.json() {
		if d, err := eng.Current(ctx, service); err == nil {
			if follow {
				shown = 0
			} else {
				shown = len(d.Events)
				for _, ev := range d.Events {
					printEvent(o.Out, ev)
				}
			}
		}
		eng.OnEvent = func(_ *deploy.Deploy, ev deploy.Event) { printEvent(o.Out, ev) }
		if isTerminal(o.Out) {
			stop := o.liveView(eng)
			defer stop()
		}
	}
	// Another live operator may hold the deploy's lease: follow the
	// journal while it runs, and take over if its lease lapses (it crashed).
	told := false
	for {
		d, err := eng.Run(ctx, service)
		if !errors.Is(err, state.ErrHeld) {
			if err != nil {
				return err
			}
			return o.outcome(d)
		}
		if !told && !o.json() {
			fmt.Fprintf(o.Err, "%v; following it (and taking over if its lease lapses)\n", err)
			told = true
		}
		cur, cerr := eng.Current(ctx, service)
		if cerr != nil {
			return cerr
		}
		if !o.json() && eng.OnEvent != nil {
			for ; shown < len(cur.Events); shown++ {
				eng.OnEvent(cur, cur.Events[shown])
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (o *Options) follow(ctx context.Context, eng *deploy.Engine, service string, shown int) error {
	for {
		d, err := eng.Current(ctx, service)
		if err != nil {
			return err
		}
		if !o.json() {
			for ; shown < len(d.Events); shown++ {
				printEvent(o.Out, d.Events[shown])
			}
		}
		if !d.Open() || d.Status != deploy.StatusRunning {
			return o.outcome(d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (o *Options) outcome(d *deploy.Deploy) error {
	if o.json() {
		if err := writeJSON(o.Out, d); err != nil {
			return err
		}
	}
	msg := fmt.Sprintf("deploy %s of %s %s: %s", d.ID, d.Request.Service, d.Request.Version, d.Status)
	if d.Reason != "" {
		msg += " (" + d.Reason + ")"
	}
	switch d.Status {
	case deploy.StatusPromoted:
		if !o.json() {
			fmt.Fprintf(o.Out, "%s in %s\n", msg, d.Ended.Sub(d.Started).Round(time.Millisecond))
		}
		return nil
	case deploy.StatusRolledBack, deploy.StatusAborted:
		return &ExitCodeError{Code: ExitRolledBack, Err: errors.New(msg)}
	case deploy.StatusHalted:
		return fmt.Errorf("%s; fix the weights or run `tandem deploy resume|abort %s`", msg, d.Request.Service)
	case deploy.StatusHeld:
		return fmt.Errorf("%s; decide with `tandem deploy promote|abort|resume %s`", msg, d.Request.Service)
	case deploy.StatusPaused:
		if !o.json() {
			fmt.Fprintf(o.Out, "%s; continue with `tandem deploy resume %s`\n", msg, d.Request.Service)
		}
		return nil
	}
	return errors.New(msg)
}

// spawnExecutor runs `tandem deploy exec SERVICE` in the background, in its
// own session, logging to the state directory.
func (o *Options) spawnExecutor(service string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logDir := filepath.Join(o.StateDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(logDir, "deploy-"+service+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "deploy", "exec", service, "--state-dir", o.StateDir, "--stack", o.Stack, "--stacks-dir", o.StacksDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

func newDeployExecCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:    "exec SERVICE",
		Short:  "Run a service's open deploy (the background executor)",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			return o.execute(cmd.Context(), o.engine(c), args[0], false)
		},
	}
}

func newDeployControlCmd(o *Options, intent, short string) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   intent + " SERVICE",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, service := cmd.Context(), args[0]
			if err := o.knownService(service); err != nil {
				return err
			}
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			eng := o.engine(c)
			d, err := eng.Control(ctx, service, intent)
			if err != nil {
				return err
			}
			if !o.json() {
				fmt.Fprintf(o.Out, "%s sent to deploy %s of %s %s (%s, phase %s)\n", intent, d.ID, service, d.Request.Version, d.Status, d.Phase)
			}
			if intent == deploy.IntentPause && !wait {
				return nil
			}
			if wait {
				return o.execute(ctx, eng, service, true)
			}
			// Carry the intent out: an executor already running picks it
			// up; otherwise one starts in the background.
			if err := o.spawnExecutor(service); err != nil {
				return err
			}
			if !o.json() {
				fmt.Fprintf(o.Out, "follow it with `tandem deploy watch %s`\n", service)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "carry it out here and wait for the deploy to end or go idle; the exit code says how it ended")
	return cmd
}

func newDeployRollbackCmd(o *Options) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Deploy the release that was live before the last promoted deploy",
		Long: `Start a new blue/green deploy of the release (version and extra environment)
that was live before the service's last promoted deploy. To stop a deploy that
is still in progress, use 'tandem deploy abort'.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, service := cmd.Context(), args[0]
			spec, err := o.spec()
			if err != nil {
				return err
			}
			if err := o.knownService(service); err != nil {
				return err
			}
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			hist, err := o.engine(c).History(ctx, service)
			if err != nil {
				return err
			}
			for _, d := range hist {
				if d.Status == deploy.StatusPromoted {
					f := deployFlags{version: d.Previous.Version, count: d.Previous.Count, countGiven: true, wait: wait}
					for k, v := range d.Previous.Env {
						f.setEnv = append(f.setEnv, k+"="+v)
					}
					if f.count > spec.Local.MaxTasks {
						f.count = spec.Local.MaxTasks
					}
					if !o.json() {
						fmt.Fprintf(o.Out, "rolling %s back from %s to %s\n", service, d.Request.Version, d.Previous.Version)
					}
					return runDeploy(ctx, o, service, f)
				}
			}
			return fmt.Errorf("%w: %s has no promoted deploy to roll back", deploy.ErrNoDeploy, service)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "run the deploy here and wait for its end")
	return cmd
}

func (o *Options) knownService(service string) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	if _, ok := spec.Service(service); !ok {
		return usagef("unknown service %q; this stack has %s", service, strings.Join(spec.ServiceNames(), ", "))
	}
	return nil
}

// serviceEngine checks the service name and connects a deploy engine to
// the platform, for the commands that read a service's deploys.
func (o *Options) serviceEngine(ctx context.Context, service string) (*deploy.Engine, error) {
	if err := o.knownService(service); err != nil {
		return nil, err
	}
	c, err := o.dial(ctx)
	if err != nil {
		return nil, err
	}
	return o.engine(c), nil
}

func newDeployStatusCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "status SERVICE",
		Short: "Show a service's open (or latest) deploy with its audit trail",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := o.serviceEngine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			d, err := eng.Current(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return writeJSON(o.Out, d)
			}
			fmt.Fprintf(o.Out, "deploy %s of %s %s: %s, phase %s, weights %d/%d (blue/green), %s -> %s, held by %s at epoch %d\n",
				d.ID, d.Request.Service, d.Request.Version, d.Status, d.Phase, d.Verified.Blue, d.Verified.Green, d.From, d.To, d.Holder, d.Epoch)
			if d.Reason != "" {
				fmt.Fprintf(o.Out, "reason: %s\n", d.Reason)
			}
			for _, ev := range d.Events {
				printEvent(o.Out, ev)
			}
			return nil
		},
	}
}

func newDeployWatchCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "watch SERVICE",
		Short: "Follow a service's deploy until it ends or goes idle",
		Long:  "Follow a service's deploy until it ends or goes idle; exit codes as for deploy --wait.",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := o.serviceEngine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.follow(cmd.Context(), eng, args[0], 0)
		},
	}
}

func newDeployHistoryCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "history SERVICE",
		Short: "List a service's deploys, newest first",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := o.serviceEngine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			hist, err := eng.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return writeJSON(o.Out, hist)
			}
			tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tFROM\tSTATUS\tSTARTED\tDURATION\tREASON")
			for _, d := range hist {
				dur := "-"
				if !d.Ended.IsZero() {
					dur = d.Ended.Sub(d.Started).Round(time.Millisecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Request.Version, d.Previous.Version, d.Status, d.Started.Format(time.DateTime), dur, d.Reason)
			}
			return tw.Flush()
		},
	}
}

func printEvent(w io.Writer, ev deploy.Event) {
	fmt.Fprintf(w, "%s  %-12s %s\n", ev.At.Format("15:04:05.000"), ev.Phase, ev.Message)
}

func printPlan(w io.Writer, p deploy.Plan) {
	r := p.Request
	fmt.Fprintf(w, "plan: deploy %s %s in %s, %d task(s), steps %v (dry run: nothing changed)\n\n", r.Service, r.Version, r.Region, r.Count, r.Steps)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tACTION\tGATE\tDEADLINE\tON FAILURE")
	for _, s := range p.Steps {
		dl := "-"
		if s.Deadline > 0 {
			dl = s.Deadline.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Phase, s.Action, s.Gate, dl, s.OnFail)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nduration: best case %s, worst case %s\n", p.Best.Round(time.Second), p.Worst.Round(time.Second))
}

// liveView keeps a status line under the events on a terminal: phase,
// weights and elapsed time, redrawn twice a second.
func (o *Options) liveView(eng *deploy.Engine) (stop func()) {
	var mu sync.Mutex
	var phase string
	var weights topology.Weights
	started := time.Now()
	redraw := func() {
		fmt.Fprintf(o.Out, "\r\x1b[K  %s  weights %d/%d (blue/green)  %s", phase, weights.Blue, weights.Green, time.Since(started).Round(time.Second))
	}
	eng.OnEvent = func(d *deploy.Deploy, ev deploy.Event) {
		mu.Lock()
		defer mu.Unlock()
		phase, weights = d.Phase, d.Verified
		fmt.Fprint(o.Out, "\r\x1b[K")
		printEvent(o.Out, ev)
		redraw()
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
				mu.Lock()
				redraw()
				mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		mu.Lock()
		fmt.Fprint(o.Out, "\r\x1b[K")
		mu.Unlock()
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
