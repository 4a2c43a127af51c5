package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// execute runs the tandem command with args and returns its exit code and
// output, as main would.
func execute(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	root := NewRootCmd(&out, &errw)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		errw.WriteString(err.Error())
	}
	return ExitCode(err), out.String(), errw.String()
}

func stacksDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../stacks")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBadInputIsRefusedWithNothingChanged(t *testing.T) {
	t.Parallel()
	broken := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(stacksDir(t), "Pulumi.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(raw), "role: secondary", "role: tertiary", 1)
	if err := os.WriteFile(filepath.Join(broken, "Pulumi.local.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := strings.Replace(string(raw), "        port: 8082\n", "", 1)
	if err := os.WriteFile(filepath.Join(broken, "Pulumi.missing.yaml"), []byte(missing), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown service", []string{"deploy", "nosuch", "--version", "v2"}, ExitUsage, `unknown service "nosuch"; this stack has eligibility, claims, notifications`},
		{"missing version", []string{"deploy", "claims"}, ExitUsage, "--version is required"},
		{"bad steps", []string{"deploy", "claims", "--version", "v2", "--steps", "50,25"}, ExitUsage, "weights must increase"},
		{"bad set-env", []string{"deploy", "claims", "--version", "v2", "--set-env", "NOEQUALS"}, ExitUsage, "must be KEY=VALUE"},
		{"platform-owned env", []string{"deploy", "claims", "--version", "v2", "--set-env", "DATABASE_URL=x"}, ExitUsage, "the platform sets DATABASE_URL"},
		{"unknown region", []string{"failover", "--to", "nowhere"}, ExitUsage, `unknown region "nowhere"; this stack has regions local-a, local-b`},
		{"failover without target", []string{"failover"}, ExitUsage, "--to is required"},
		{"unknown stack", []string{"up", "--stack", "nosuch"}, ExitUsage, "Pulumi.nosuch.yaml not found"},
		{"wrong field in stack", []string{"up", "--stacks-dir", broken}, ExitUsage, `regions[1].role: "tertiary" is not a role`},
		{"missing field in stack", []string{"up", "--stacks-dir", broken, "--stack", "missing"}, ExitUsage, "services[1].port: 0 is out of range"},
		{"bad output format", []string{"status", "-o", "yaml"}, ExitUsage, `--output "yaml" is not a format`},
		{"gameday rate out of range", []string{"gameday", "--rate", "0"}, ExitUsage, "--rate 0 is out of range"},
		{"status with nothing up", []string{"status"}, ExitError, "no platform is up"},
		{"missing argument", []string{"deploy"}, ExitUsage, "tandem deploy takes 1 argument, got 0; see `tandem deploy --help`"},
		{"unknown command", []string{"bogus"}, ExitUsage, `unknown command "bogus"`},
		{"unknown flag", []string{"status", "--nosuchflag"}, ExitUsage, "unknown flag: --nosuchflag"},
		{"extra argument", []string{"status", "extra"}, ExitUsage, "takes no arguments"},
		{"count zero", []string{"deploy", "claims", "--version", "v2", "--count", "0"}, ExitUsage, "--count 0 is out of range"},
		{"unknown stack lists the stacks", []string{"up", "--stack", "nosuch"}, ExitUsage, "has: dev, local"},
		{"dry run changes nothing", []string{"deploy", "claims", "--version", "v2", "--dry-run"}, ExitOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			args := append([]string{"--stacks-dir", stacksDir(t), "--state-dir", state}, tc.args...)
			code, _, errOut := execute(t, args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say %q", errOut, tc.want)
			}
			entries, _ := os.ReadDir(state)
			if len(entries) != 0 {
				t.Errorf("bad input left files in the state directory: %v", entries)
			}
		})
	}
}

func TestUpRefusedWhileAnotherPlatformHoldsTheStateDir(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	// Hold the platform lock as a running platform does.
	f, err := os.OpenFile(filepath.Join(state, "platform.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"up"}, {"up", "-d"}, {"gameday"}} {
		code, _, errOut := execute(t, append([]string{"--stacks-dir", stacksDir(t), "--state-dir", state}, args...)...)
		if code != ExitUsage || !strings.Contains(errOut, "already up") || !strings.Contains(errOut, "tandem down") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying it is already up and how to stop it", args, code, errOut)
		}
	}
}

func TestDownWithNothingUpIsNotAnError(t *testing.T) {
	t.Parallel()
	code, out, errOut := execute(t, "--state-dir", t.TempDir(), "down")
	if code != ExitOK || !strings.Contains(out, "no platform is up") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestHelpExplainsExitCodes(t *testing.T) {
	t.Parallel()
	code, out, _ := execute(t, "deploy", "--help")
	if code != ExitOK || !strings.Contains(out, "3 rolled back") || !strings.Contains(out, "--set-env") {
		t.Errorf("deploy --help: exit %d, %q", code, out)
	}
}
