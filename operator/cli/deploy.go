package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/stacks"
)

type deployFlags struct {
	version string
	setEnv  []string
	steps   string
	count   int
	skip    bool
}

func newDeployCmd(o *Options) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "deploy SERVICE --version V",
		Short: "Blue/green deploy a service with automatic rollback",
		Long: `Deploy a new version of SERVICE in the active region, blue/green: launch the
idle color with the new version, wait until every task is healthy, shift
traffic to it step by step (reading the weights back after each change), check
its error rate at each step against the stack's deploy policy, then retire the
old color after draining it. On a breach, or if the new color never becomes
healthy, traffic goes back to the old color (verified) and the new color is
stopped.

Analysis needs traffic: a step with fewer than deploy.minSamples requests is
inconclusive and holds; still inconclusive after deploy.analysisTimeout, the
deploy rolls back. For a service with no traffic, --skip-analysis promotes on
health alone.

Exit codes: 0 promoted, 3 rolled back, 4 refused by preflight (nothing
changed), 2 bad input, 1 other errors.`,
		Example: `  tandem deploy claims --version v2
  tandem deploy claims --version v3 --set-env TANDEM_FAULT_ERROR_RATE=0.2
  tandem deploy eligibility --version v2 --steps 10,50,100 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDeploy(cmd.Context(), o, args[0], f) },
	}
	cmd.Flags().StringVar(&f.version, "version", "", "version to deploy (required)")
	cmd.Flags().StringArrayVar(&f.setEnv, "set-env", nil, "extra environment variable for the new version, K=V (repeatable)")
	cmd.Flags().StringVar(&f.steps, "steps", "", "green weights to shift through, ending at 100 (default: the stack's deploy.steps)")
	cmd.Flags().IntVar(&f.count, "count", 0, "tasks of the new version (default: the service's count, capped by local.maxTasks)")
	cmd.Flags().BoolVar(&f.skip, "skip-analysis", false, "promote on health alone, without judging the new version's traffic (for a service with no traffic)")
	return cmd
}

func parseDeployFlags(spec *stacks.Spec, service string, f deployFlags) (deploy.Request, error) {
	svc, ok := spec.Service(service)
	if !ok {
		return deploy.Request{}, usagef("unknown service %q; this stack has %s", service, strings.Join(spec.ServiceNames(), ", "))
	}
	if f.version == "" {
		return deploy.Request{}, usagef("--version is required, e.g. --version v2")
	}
	if strings.ContainsAny(f.version, " \t\n/") {
		return deploy.Request{}, usagef("--version %q must not contain spaces or slashes", f.version)
	}
	env := map[string]string{}
	for _, kv := range f.setEnv {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " =") {
			return deploy.Request{}, usagef("--set-env %q must be KEY=VALUE", kv)
		}
		switch k {
		case "PORT", "HOST", "DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL", "TANDEM_REGION", "TANDEM_COLOR", "TANDEM_VERSION":
			return deploy.Request{}, usagef("--set-env %s: the platform sets %s itself", k, k)
		}
		env[k] = v
	}
	var steps []int
	if f.steps != "" {
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
	if count == 0 {
		count = min(svc.Count, spec.Local.MaxTasks)
	}
	if count < 1 || count > spec.Local.MaxTasks {
		return deploy.Request{}, usagef("--count %d is out of range; use 1 to %d (local.maxTasks)", count, spec.Local.MaxTasks)
	}
	return deploy.FromPolicy(deploy.Request{Service: service, Version: f.version, Env: env, Count: count, Steps: steps, SkipAnalysis: f.skip}, spec.Deploy), nil
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
	c, err := local.Dial(o.StateDir)
	if err != nil {
		return err
	}
	if req.Region, err = c.ActiveRegion(ctx); err != nil {
		return err
	}
	eng := &deploy.Engine{Traffic: c, Fleet: c, Metrics: c}
	if !o.json() {
		eng.OnEvent = func(ev deploy.Event) {
			fmt.Fprintf(o.Out, "%s  %-9s %s\n", ev.At.Format("15:04:05.000"), ev.Phase, ev.Message)
		}
	}
	res, err := eng.Run(ctx, req)
	if o.json() && res != nil {
		_ = writeJSON(o.Out, res)
	}
	if err != nil {
		return err
	}
	if res.Outcome == deploy.RolledBack {
		return &ExitCodeError{Code: ExitRolledBack, Err: fmt.Errorf("deploy of %s %s rolled back: %s", service, req.Version, res.Reason)}
	}
	if !o.json() {
		fmt.Fprintf(o.Out, "deploy of %s %s promoted in %s (%s)\n", service, req.Version, req.Region, res.Duration.Round(1e6))
	}
	return nil
}
