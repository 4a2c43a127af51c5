// Package config reads the contract between the platform and a service: a
// handful of environment variables that the local platform and ECS both set.
//
// Every problem is collected before the service gives up, so an operator who
// starts a task with three mistakes sees all three in one log line instead of
// fixing them one restart at a time.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Lookup returns the value of an environment variable and whether it is set.
// os.LookupEnv satisfies it; tests pass a map.
type Lookup func(name string) (string, bool)

// MapLookup adapts a map to Lookup.
func MapLookup(m map[string]string) Lookup {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// Error lists every invalid or missing variable. The message is meant for the
// operator who starts the service: it names each variable and how to fix it.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// IsError reports whether err is (or wraps) a configuration error, which the
// process turns into its own exit code.
func IsError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// Reader reads variables and remembers what was wrong with them.
type Reader struct {
	lookup   Lookup
	problems []string
}

// NewReader returns a Reader over lookup.
func NewReader(lookup Lookup) *Reader {
	return &Reader{lookup: lookup}
}

func (r *Reader) get(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (r *Reader) fail(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// Problem records a problem that spans several variables.
func (r *Reader) Problem(format string, args ...any) {
	r.fail(format, args...)
}

// Err returns an *Error listing every problem seen so far, or nil.
func (r *Reader) Err() error {
	if len(r.problems) == 0 {
		return nil
	}
	return &Error{Problems: append([]string(nil), r.problems...)}
}

// String returns the variable, or def when it is unset or blank.
func (r *Reader) String(name, def string) string {
	if v, ok := r.get(name); ok {
		return v
	}
	return def
}

// Required returns the variable, recording a problem that names it and says
// what to set when it is missing. hint completes "set it to ...".
func (r *Reader) Required(name, hint string) string {
	v, ok := r.get(name)
	if !ok {
		r.fail("%s is required: set it to %s", name, hint)
	}
	return v
}

// Port reads a required TCP port.
func (r *Reader) Port(name string) int {
	v := r.Required(name, "the TCP port to listen on, e.g. "+name+"=8080")
	if v == "" {
		return 0
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		r.fail("%s=%q is not a TCP port: set it to a number between 1 and 65535", name, v)
		return 0
	}
	return p
}

// Fraction reads an optional number between 0 and 1 inclusive.
func (r *Reader) Fraction(name string, def float64) float64 {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		r.fail("%s=%q is not a fraction: set it to a number between 0 and 1, e.g. %s=0.25", name, v, name)
		return def
	}
	return f
}

// Duration reads an optional duration in Go's notation (250ms, 5s, 2m)
// between lo and hi inclusive.
func (r *Reader) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.fail("%s=%q is not a duration between %s and %s: set it to a value such as %s=%s", name, v, lo, hi, name, def)
		return def
	}
	return d
}

// Int reads an optional integer between lo and hi inclusive.
func (r *Reader) Int(name string, def, lo, hi int) int {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail("%s=%q is not an integer between %d and %d: set it to a value such as %s=%d", name, v, lo, hi, name, def)
		return def
	}
	return n
}

// URL reads a URL whose scheme is one of schemes and that names a host. When
// required is false and the variable is unset, it returns "".
func (r *Reader) URL(name string, required bool, hint string, schemes ...string) string {
	var v string
	if required {
		v = r.Required(name, hint)
	} else {
		v, _ = r.get(name)
	}
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || !contains(schemes, u.Scheme) {
		// The value may carry a password, so it is never echoed.
		r.fail("%s is not a valid %s URL: set it to %s", name, strings.Join(schemes, " or "), hint)
		return ""
	}
	return v
}

// OneOf reads an optional variable that must be one of allowed.
func (r *Reader) OneOf(name, def string, allowed ...string) string {
	v := r.String(name, def)
	if !contains(allowed, v) {
		r.fail("%s=%q is not allowed: set it to one of %s", name, v, strings.Join(allowed, ", "))
		return def
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Base is the part of the contract every service reads.
type Base struct {
	// Host is the address to bind; empty means every interface.
	Host string
	Port int
	// DatabaseURL is the primary, used for writes and read-your-writes reads.
	DatabaseURL string
	// DatabaseReadURL is a replica for reads that tolerate lag. It equals
	// DatabaseURL when no replica is configured.
	DatabaseReadURL string
	Region          string
	Color           string
	Version         string
	// FaultErrorRate is the fraction of non-health requests answered with an
	// injected 500, used to rehearse automatic rollback.
	FaultErrorRate float64
}

// Addr is the listen address.
func (b Base) Addr() string {
	return net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
}

const pgHint = "a PostgreSQL DSN such as postgres://user:pass@127.0.0.1:5432/dbname"

// ReadBase reads the variables every service shares. Region, color and
// version default to values that make a service started by hand identifiable
// in logs ("local", "blue", "dev").
func ReadBase(r *Reader) Base {
	b := Base{
		Host:           r.String("HOST", ""),
		Port:           r.Port("PORT"),
		DatabaseURL:    r.URL("DATABASE_URL", true, pgHint, "postgres", "postgresql"),
		Region:         r.String("TANDEM_REGION", "local"),
		Color:          r.OneOf("TANDEM_COLOR", "blue", "blue", "green"),
		Version:        r.String("TANDEM_VERSION", "dev"),
		FaultErrorRate: r.Fraction("TANDEM_FAULT_ERROR_RATE", 0),
	}
	b.DatabaseReadURL = r.URL("DATABASE_READ_URL", false, pgHint, "postgres", "postgresql")
	if b.DatabaseReadURL == "" {
		b.DatabaseReadURL = b.DatabaseURL
	}
	return b
}

const redisHint = "a Redis URL such as redis://:password@127.0.0.1:6379/0"

// ReadRedisURL reads the required REDIS_URL.
func ReadRedisURL(r *Reader) string {
	return r.URL("REDIS_URL", true, redisHint, "redis", "rediss")
}

// ReadOptionalRedisURL reads REDIS_URL for a service that can run without
// Redis; it returns "" when the variable is unset.
func ReadOptionalRedisURL(r *Reader) string {
	return r.URL("REDIS_URL", false, redisHint, "redis", "rediss")
}
