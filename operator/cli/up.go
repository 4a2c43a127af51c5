package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/local"
)

// detachedEnv marks the background child of `tandem up -d`.
const detachedEnv = "TANDEM_DETACHED_CHILD"

func newUpCmd(o *Options) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the embedded local platform",
		Long: `Start the embedded local platform for a stack: per region a PostgreSQL server
(primary in the primary region, streaming replicas elsewhere), a redis-server
(primary and replicas), an L7 proxy with blue/green target groups, and the
services' processes in the primary region; in front, a front door that routes
to the active region. Everything lives under --state-dir.

In the foreground it runs until interrupted (Ctrl-C), then stops everything.
With -d it starts in the background and returns once the platform is ready;
stop it with 'tandem down'.`,
		Example: "  tandem up -d\n  tandem up --stack local --state-dir /var/tmp/tandem",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd.Context(), o, detach)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and return when ready")
	return cmd
}

func runUp(ctx context.Context, o *Options, detach bool) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	if local.Running(o.StateDir) {
		return usagef("%v in %s; run `tandem down` first, or use another --state-dir", local.ErrAlreadyUp, o.StateDir)
	}
	if detach && os.Getenv(detachedEnv) == "" {
		return upDetached(ctx, o)
	}
	progress := o.Out
	if o.json() {
		progress = o.Err
	}
	p, err := local.Up(ctx, local.Config{Stack: o.Stack, Spec: spec, StateDir: o.StateDir, BinDir: o.BinDir, Logger: o.platformLogger(), Progress: progress})
	if err != nil {
		if errors.Is(err, local.ErrAlreadyUp) {
			return &UsageError{err}
		}
		return err
	}
	defer p.Down(context.WithoutCancel(ctx))
	if err := p.Serve(ctx); err != nil {
		return err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return err
	}
	if o.json() {
		if err := writeJSON(o.Out, st); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(o.Out, "platform up: front door %s (active region %s)\n", st.FrontDoor.URL, st.ActiveRegion)
		if !detach {
			fmt.Fprintln(o.Out, "press Ctrl-C to stop")
		}
	}
	select {
	case <-ctx.Done():
	case <-p.Done():
	}
	return nil
}

// upDetached starts `tandem up` again in its own session with output to
// the state directory's platform.log, and waits until it answers on its
// control socket or exits.
func upDetached(ctx context.Context, o *Options) error {
	if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	logPath := filepath.Join(o.StateDir, "platform.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"up", "--stack", o.Stack, "--stacks-dir", o.StacksDir, "--state-dir", o.StateDir, "--bin-dir", o.BinDir}
	if o.Verbose {
		args = append(args, "-v")
	}
	child := exec.Command(exe, args...)
	child.Env = append(os.Environ(), detachedEnv+"=1")
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start platform in the background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(5 * time.Minute)
	for {
		select {
		case err := <-exited:
			tail, _ := os.ReadFile(logPath)
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(tail)), "tandem: "))
			if child.ProcessState != nil && child.ProcessState.ExitCode() == ExitUsage {
				return &UsageError{errors.New(msg)}
			}
			return fmt.Errorf("platform exited during start (%v):\n%s", err, msg)
		case <-deadline:
			_ = child.Process.Kill()
			return fmt.Errorf("platform not ready after 5 minutes; see %s", logPath)
		case <-ctx.Done():
			_ = child.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		c, err := local.Dial(o.StateDir)
		if err != nil {
			continue
		}
		st, err := c.Status(ctx)
		if err != nil {
			continue
		}
		if o.json() {
			return writeJSON(o.Out, st)
		}
		fmt.Fprintf(o.Out, "platform up in the background (pid %d): front door %s, active region %s\nlog: %s; stop it with `tandem down`\n",
			st.PID, st.FrontDoor.URL, st.ActiveRegion, logPath)
		return nil
	}
}
