// Package cli holds the tandem command: one file per command, each a
// newXxxCmd constructor and a plain runXxx function that tests can call with
// an Options whose streams and clients are fakes.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/stacks"
)

// Options are shared by every command.
type Options struct {
	StateDir  string
	Stack     string
	StacksDir string
	BinDir    string
	Output    string
	Verbose   bool
	// stackGiven is set when --stack or $TANDEM_STACK named the stack.
	stackGiven bool

	Out, Err io.Writer
}

// Exit codes, decided here and nowhere else.
const (
	ExitOK         = 0
	ExitError      = 1
	ExitUsage      = 2
	ExitRolledBack = 3
	ExitRefused    = 4
)

// UsageError is bad input: the command did nothing.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return &UsageError{fmt.Errorf(format, args...)} }

// ExitCodeError carries a specific exit code (a rolled-back deploy, a
// failed gameday) with its message.
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string { return e.Err.Error() }
func (e *ExitCodeError) Unwrap() error { return e.Err }

// exactArgs and noArgs are cobra's argument checks, reporting bad input as
// such (exit 2) with a pointer to the help.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			what := "argument"
			if n != 1 {
				what += "s"
			}
			return usagef("%s takes %d %s, got %d; see `%s --help`", cmd.CommandPath(), n, what, len(args), cmd.CommandPath())
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q; see `%s --help`", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

// ExitCode maps an error from Execute to the process exit code.
func ExitCode(err error) int {
	var ce *ExitCodeError
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ce):
		return ce.Code
	case errors.As(err, &ue):
		return ExitUsage
	case strings.HasPrefix(err.Error(), "unknown command "):
		// cobra's own error for a command that does not exist.
		return ExitUsage
	case errors.Is(err, deploy.ErrRequestIDReused):
		return ExitUsage
	case errors.Is(err, deploy.ErrPreflight), errors.Is(err, failover.ErrRefused):
		return ExitRefused
	default:
		return ExitError
	}
}

// NewRootCmd builds the tandem command tree.
func NewRootCmd(out, errw io.Writer) *cobra.Command {
	o := &Options{Out: out, Err: errw}
	root := &cobra.Command{
		Use:   "tandem",
		Short: "Blue/green deploys and region failover for a multi-region platform",
		Long: `tandem drives blue/green deploys with analysis and automatic rollback, and
region failover, switchover and failback, on the embedded local platform: real
PostgreSQL and Redis replication, service processes and proxies on loopback.
(The AWS driver is not in this version; infra/ provisions AWS with Pulumi.)

Start with:  tandem up -d     (the local platform, in the background)
             tandem status
             tandem deploy claims --version v2 --wait
             tandem failover --to local-b
             tandem down
or run the whole rehearsal at once:  tandem gameday`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			o.stackGiven = cmd.Flags().Changed("stack") || os.Getenv("TANDEM_STACK") != ""
			if err := local.CheckStateDir(o.StateDir); err != nil {
				return &UsageError{err}
			}
			switch o.Output {
			case "text", "json":
			default:
				return usagef("--output %q is not a format; use text or json", o.Output)
			}
			if o.BinDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				o.BinDir = filepath.Dir(exe)
			}
			return nil
		},
	}
	root.SetOut(out)
	root.SetErr(errw)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v; see `%s --help`", err, cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&o.StateDir, "state-dir", envOr("TANDEM_STATE_DIR", ".tandem"), "directory holding the local platform's processes, data, logs and control socket ($TANDEM_STATE_DIR)")
	pf.StringVar(&o.Stack, "stack", envOr("TANDEM_STACK", "local"), "stack name: reads <stacks-dir>/Pulumi.<stack>.yaml ($TANDEM_STACK)")
	pf.StringVar(&o.StacksDir, "stacks-dir", envOr("TANDEM_STACKS_DIR", "stacks"), "directory of the stack files ($TANDEM_STACKS_DIR)")
	pf.StringVar(&o.BinDir, "bin-dir", os.Getenv("TANDEM_BIN_DIR"), "directory of the service binaries (default: the directory of the tandem binary; $TANDEM_BIN_DIR)")
	pf.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	pf.BoolVarP(&o.Verbose, "verbose", "v", false, "log platform details to stderr")

	root.AddCommand(newUpCmd(o), newDownCmd(o), newStatusCmd(o), newDeployCmd(o), newFailoverCmd(o), newReprotectCmd(o), newProbeCmd(o), newFaultCmd(o), newOperatorCmd(o), newGamedayCmd(o))
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (o *Options) spec() (*stacks.Spec, error) {
	path := stacks.Path(o.StacksDir, o.Stack)
	if _, err := os.Stat(path); err != nil {
		var names []string
		files, _ := filepath.Glob(stacks.Path(o.StacksDir, "*"))
		for _, f := range files {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml"))
		}
		if len(names) == 0 {
			return nil, usagef("stack %q: %s not found, and %s has no stack files; run tandem from the repository root or pass --stacks-dir", o.Stack, path, o.StacksDir)
		}
		return nil, usagef("stack %q: %s not found; %s has: %s", o.Stack, path, o.StacksDir, strings.Join(names, ", "))
	}
	s, err := stacks.Load(path)
	if err != nil {
		return nil, &UsageError{err}
	}
	return s, nil
}

// dial connects to the platform of the state directory and checks that it
// runs the stack this command was given, so a command never acts on one
// stack with another's policy.
func (o *Options) dial(ctx context.Context) (*local.Client, error) {
	c, err := local.Dial(o.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Stack != o.Stack {
		if o.stackGiven {
			return nil, usagef("the platform in %s runs stack %q, not %q; pass --stack %s (or omit --stack)", o.StateDir, st.Stack, o.Stack, st.Stack)
		}
		// No stack named: act on the platform's own.
		o.Stack = st.Stack
	}
	return c, nil
}

func (o *Options) logger() *slog.Logger {
	if !o.Verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(o.Err, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// platformLogger is the running platform's log: with -v everything, else
// warnings and errors (an in-region failover, a standby that could not be
// rebuilt), which `up -d` writes to the state directory's platform.log.
func (o *Options) platformLogger() *slog.Logger {
	if o.Verbose {
		return o.logger()
	}
	return slog.New(slog.NewTextHandler(o.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (o *Options) json() bool { return o.Output == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
