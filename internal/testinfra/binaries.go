package testinfra

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// ServiceBinaries builds the bundled services (eligibility, claims,
// notifications) once per test binary and returns the directory holding
// them, for tests that run the local platform with real processes.
// TANDEM_TEST_BIN_DIR names a directory of binaries built already instead.
func ServiceBinaries(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("TANDEM_TEST_BIN_DIR"); dir != "" {
		return dir
	}
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		mu.Lock()
		binDir, binErr = tempDir("tandem-test-bin-")
		mu.Unlock()
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./services/eligibility", "./services/claims", "./services/notifications")
		cmd.Dir = root
		cmd.Env = os.Environ()
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = &buildError{err: err, out: string(b)}
		}
	})
	if binErr != nil {
		t.Fatalf("build the service binaries: %v", binErr)
	}
	return binDir
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

var (
	tandemOnce sync.Once
	tandemPath string
	tandemErr  error
)

// TandemBinary builds the tandem command once per test binary and returns
// its path, for tests that run (and kill) the operator as a process.
func TandemBinary(t testing.TB) string {
	t.Helper()
	tandemOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			tandemErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		mu.Lock()
		dir, err := tempDir("tandem-test-cli-")
		mu.Unlock()
		if err != nil {
			tandemErr = err
			return
		}
		tandemPath = filepath.Join(dir, "tandem")
		cmd := exec.Command("go", "build", "-o", tandemPath, "./operator/cmd/tandem")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			tandemErr = &buildError{err: err, out: string(b)}
		}
	})
	if tandemErr != nil {
		t.Fatalf("build tandem: %v", tandemErr)
	}
	return tandemPath
}
