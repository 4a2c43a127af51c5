package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadBase(t *testing.T) {
	t.Parallel()
	const dsn = "postgres://u:p@127.0.0.1:5432/claims"
	tests := []struct {
		name     string
		env      map[string]string
		want     Base
		problems []string // substrings expected in the error, in order
	}{
		{
			name: "minimal with defaults",
			env:  map[string]string{"PORT": "8080", "DATABASE_URL": dsn},
			want: Base{Port: 8080, DatabaseURL: dsn, DatabaseReadURL: dsn, Region: "local", Color: "blue", Version: "dev"},
		},
		{
			name: "everything set",
			env: map[string]string{
				"PORT": "9000", "HOST": "127.0.0.1", "DATABASE_URL": dsn,
				"DATABASE_READ_URL": "postgresql://u@127.0.0.1:5433/claims",
				"TANDEM_REGION":     "us-east-2", "TANDEM_COLOR": "green", "TANDEM_VERSION": "v1.2.3",
				"TANDEM_FAULT_ERROR_RATE": "0.25",
			},
			want: Base{
				Host: "127.0.0.1", Port: 9000, DatabaseURL: dsn,
				DatabaseReadURL: "postgresql://u@127.0.0.1:5433/claims",
				Region:          "us-east-2", Color: "green", Version: "v1.2.3", FaultErrorRate: 0.25,
			},
		},
		{
			name:     "nothing set names both required variables",
			env:      map[string]string{},
			problems: []string{"PORT is required", "DATABASE_URL is required"},
		},
		{
			name:     "bad port",
			env:      map[string]string{"PORT": "http", "DATABASE_URL": dsn},
			problems: []string{`PORT="http" is not a TCP port`},
		},
		{
			name:     "port out of range",
			env:      map[string]string{"PORT": "70000", "DATABASE_URL": dsn},
			problems: []string{"is not a TCP port"},
		},
		{
			name:     "wrong database scheme",
			env:      map[string]string{"PORT": "1", "DATABASE_URL": "mysql://x@h/db"},
			problems: []string{"DATABASE_URL is not a valid postgres or postgresql URL"},
		},
		{
			name:     "fault rate above one",
			env:      map[string]string{"PORT": "1", "DATABASE_URL": dsn, "TANDEM_FAULT_ERROR_RATE": "1.5"},
			problems: []string{"TANDEM_FAULT_ERROR_RATE=\"1.5\" is not a fraction"},
		},
		{
			name:     "fault rate not a number",
			env:      map[string]string{"PORT": "1", "DATABASE_URL": dsn, "TANDEM_FAULT_ERROR_RATE": "NaN"},
			problems: []string{"TANDEM_FAULT_ERROR_RATE"},
		},
		{
			name:     "unknown color",
			env:      map[string]string{"PORT": "1", "DATABASE_URL": dsn, "TANDEM_COLOR": "red"},
			problems: []string{`TANDEM_COLOR="red" is not allowed: set it to one of blue, green`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(MapLookup(tt.env))
			got := ReadBase(r)
			err := r.Err()
			if len(tt.problems) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ReadBase mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !IsError(err) {
				t.Fatalf("want a configuration error, got %v", err)
			}
			msg := err.Error()
			at := 0
			for _, p := range tt.problems {
				i := strings.Index(msg[at:], p)
				if i < 0 {
					t.Fatalf("error %q does not mention %q after offset %d", msg, p, at)
				}
				at += i + len(p)
			}
		})
	}
}

func TestURLNeverEchoesSecrets(t *testing.T) {
	t.Parallel()
	r := NewReader(MapLookup(map[string]string{"REDIS_URL": "http://:s3cret@host:6379"}))
	ReadRedisURL(r)
	err := r.Err()
	if err == nil {
		t.Fatal("want an error for an http:// Redis URL")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestAddr(t *testing.T) {
	t.Parallel()
	if got := (Base{Port: 80}).Addr(); got != ":80" {
		t.Errorf("Addr() = %q, want :80", got)
	}
	if got := (Base{Host: "127.0.0.1", Port: 80}).Addr(); got != "127.0.0.1:80" {
		t.Errorf("Addr() = %q, want 127.0.0.1:80", got)
	}
}

func TestDurationAndInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantD   time.Duration
		wantN   int
		problem string
	}{
		{name: "defaults", env: map[string]string{}, wantD: 5 * time.Second, wantN: 3},
		{name: "set", env: map[string]string{"D": "250ms", "N": "7"}, wantD: 250 * time.Millisecond, wantN: 7},
		{name: "zero allowed at the bound", env: map[string]string{"D": "0s", "N": "0"}, wantD: 0, wantN: 0},
		{name: "not a duration", env: map[string]string{"D": "5"}, wantD: 5 * time.Second, wantN: 3, problem: `D="5" is not a duration between 0s and 1m0s`},
		{name: "duration too long", env: map[string]string{"D": "2h"}, wantD: 5 * time.Second, wantN: 3, problem: "is not a duration"},
		{name: "not an integer", env: map[string]string{"N": "many"}, wantD: 5 * time.Second, wantN: 3, problem: `N="many" is not an integer between 0 and 10`},
		{name: "integer out of range", env: map[string]string{"N": "11"}, wantD: 5 * time.Second, wantN: 3, problem: "is not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(MapLookup(tt.env))
			d := r.Duration("D", 5*time.Second, 0, time.Minute)
			n := r.Int("N", 3, 0, 10)
			if d != tt.wantD || n != tt.wantN {
				t.Errorf("got %s and %d, want %s and %d", d, n, tt.wantD, tt.wantN)
			}
			err := r.Err()
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("err = %v, want it to contain %q", err, tt.problem)
			}
		})
	}
}
