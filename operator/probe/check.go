package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// DialFunc opens a network connection. A vantage point's checks dial
// through its DialFunc, which is how a vantage point gets a network of its
// own (and how one is cut off in a rehearsal).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (d DialFunc) orDefault() DialFunc {
	if d != nil {
		return d
	}
	var nd net.Dialer
	return nd.DialContext
}

// HTTP checks that a GET of URL answers Status (200 when zero) and carries
// every header of Header with the value given. Each check opens a fresh
// connection, so a listener that closed is seen at once.
type HTTP struct {
	URL    string
	Status int
	Header map[string]string
	Dial   DialFunc
}

// Check runs the request.
func (c HTTP) Check(ctx context.Context) Result {
	want := c.Status
	if want == 0 {
		want = http.StatusOK
	}
	tr := &http.Transport{DialContext: c.Dial.orDefault(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return Failed(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Failed(unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != want {
		return Result{Error: fmt.Sprintf("answered %d, want %d: %s", resp.StatusCode, want, problemDetail(body))}
	}
	for k, v := range c.Header {
		if got := resp.Header.Get(k); got != v {
			return Result{Error: fmt.Sprintf("answered by %s %q, want %q", k, got, v)}
		}
	}
	return Result{OK: true, Detail: strconv.Itoa(resp.StatusCode)}
}

// unwrapURLError drops the method and URL that net/http puts in front of
// every error: the target's name says where.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// problemDetail is the detail of a problem+json body (what the proxies and
// services answer errors with), else the body's first line.
func problemDetail(body []byte) string {
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	return oneLine(body)
}

func oneLine(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// TCP checks that Addr accepts a connection.
type TCP struct {
	Addr string
	Dial DialFunc
}

// Check connects and closes.
func (c TCP) Check(ctx context.Context) Result {
	conn, err := c.Dial.orDefault()(ctx, "tcp", c.Addr)
	if err != nil {
		return Failed(err)
	}
	conn.Close()
	return Result{OK: true}
}

// Postgres checks that a PostgreSQL server behind DSN accepts a login and
// answers a query, and reports its role (pg_is_in_recovery) with, on a
// replica, its replay lag and whether it is streaming, and on a primary,
// how many replicas stream from it and their largest replay lag.
type Postgres struct {
	DSN  string
	Dial DialFunc
}

const postgresQuery = `SELECT pg_is_in_recovery(),
	CASE WHEN NOT pg_is_in_recovery() THEN 0
	     WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
	     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
	EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
	(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'),
	(SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication)::float8`

// Check logs in and queries.
func (c Postgres) Check(ctx context.Context) Result {
	cfg, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		// The DSN carries a password: never echo it.
		return Result{Error: "bad connection string"}
	}
	cfg.DialFunc = pgconn.DialFunc(c.Dial.orDefault())
	cfg.RuntimeParams["application_name"] = "tandem-probe"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Failed(connectError(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var (
		recovery, streaming bool
		lag, replicaLag     float64
		replicas            int64
	)
	if err := conn.QueryRow(ctx, postgresQuery).Scan(&recovery, &lag, &streaming, &replicas, &replicaLag); err != nil {
		return Failed(err)
	}
	if !recovery {
		return Result{OK: true, Role: "primary", Detail: fmt.Sprintf("%d streaming %s, replay lag %s",
			replicas, plural(replicas, "replica"), seconds(replicaLag))}
	}
	r := Result{OK: true, Role: "replica", Lag: seconds(lag), Replicating: &streaming, Detail: "streaming"}
	if !streaming {
		r.Detail = "not streaming"
	}
	return r
}

// connectError drops what pgx puts in front of a failed connection (user,
// database, address): the target's name says where.
func connectError(err error) error {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return err
	}
	inner := ce.Unwrap()
	if u := errors.Unwrap(inner); u != nil {
		inner = u
	}
	return fmt.Errorf("connect: %w", inner)
}

// Redis checks that a redis server answers INFO replication after AUTH, and
// reports its role with, on a replica, whether its link to the primary is
// up (and as lag, how long it has been down), and on a primary, how many
// bytes its furthest replica is behind.
type Redis struct {
	Addr     string
	Password string
	Dial     DialFunc
}

// Check asks for the replication section.
func (c Redis) Check(ctx context.Context) Result {
	// Dial first, so that an unreachable server is this check's failure
	// rather than the client pool's (which retries and logs on its own).
	conn, err := c.Dial.orDefault()(ctx, "tcp", c.Addr)
	if err != nil {
		return Failed(err)
	}
	var once sync.Once
	dial := func(context.Context, string, string) (net.Conn, error) {
		var out net.Conn
		once.Do(func() { out = conn })
		if out == nil {
			return nil, errors.New("one connection per check")
		}
		return out, nil
	}
	rc := redis.NewClient(&redis.Options{Addr: c.Addr, Password: c.Password, Dialer: dial, DialerRetries: 1,
		MaxRetries: -1, PoolSize: 1, Protocol: 2, DisableIdentity: true, ContextTimeoutEnabled: true})
	defer rc.Close()
	defer conn.Close()
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return Failed(err)
	}
	fields := parseInfo(info)
	switch fields["role"] {
	case "master":
		offset, _ := strconv.ParseInt(fields["master_repl_offset"], 10, 64)
		var replicas, behind int64
		for k, v := range fields {
			if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "offset=") {
				continue
			}
			replicas++
			for _, kv := range strings.Split(v, ",") {
				if o, ok := strings.CutPrefix(kv, "offset="); ok {
					n, _ := strconv.ParseInt(o, 10, 64)
					behind = max(behind, offset-n)
				}
			}
		}
		return Result{OK: true, Role: "primary", Detail: fmt.Sprintf("%d %s, furthest %d bytes behind", replicas, plural(replicas, "replica"), behind)}
	case "slave":
		up := fields["master_link_status"] == "up"
		r := Result{OK: true, Role: "replica", Replicating: &up}
		if up {
			// An idle primary pings its replicas only every few seconds, so
			// the time since the last byte is no measure of lag while the
			// link is up.
			r.Detail = "link up, last heard " + fields["master_last_io_seconds_ago"] + "s ago"
		} else {
			r.Detail = "link down"
			if n, err := strconv.Atoi(fields["master_link_down_since_seconds"]); err == nil && n >= 0 {
				r.Lag = time.Duration(n) * time.Second
			}
		}
		return r
	}
	return Result{Error: fmt.Sprintf("unexpected role %q", fields["role"])}
}

func parseInfo(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
