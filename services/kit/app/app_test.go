package app

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tandemhq/tandem/services/kit/config"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	cfgErr := &config.Error{Problems: []string{"PORT is required: set it to a port", "REDIS_URL is required: set it"}}
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr []string
	}{
		{name: "clean", err: nil, wantCode: ExitOK},
		{name: "configuration", err: fmt.Errorf("read config: %w", cfgErr), wantCode: ExitConfig,
			wantStderr: []string{"claims: cannot start: invalid configuration", "  - PORT is required", "  - REDIS_URL is required"}},
		{name: "runtime", err: errors.New("connect to postgres: refused"), wantCode: ExitFailed,
			wantStderr: []string{"claims: connect to postgres: refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if got := ExitCode("claims", tt.err, &stderr); got != tt.wantCode {
				t.Errorf("code = %d, want %d", got, tt.wantCode)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
			if tt.err == nil && stderr.Len() != 0 {
				t.Errorf("stderr = %q on a clean exit", stderr.String())
			}
		})
	}
}
