package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func checkCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// cutOff is a vantage point's network that reaches nothing.
func cutOff(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("vantage point cut off")
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHTTPCheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Region", "r1")
		if r.URL.Path == "/problem" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Bad Gateway","status":502,"detail":"region r1 did not answer"}`))
			return
		}
		if r.URL.Path == "/broken" {
			http.Error(w, "target group claims-blue has no healthy target", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name  string
		check HTTP
		ok    bool
		err   string
	}{
		{"answers", HTTP{URL: srv.URL + "/ok"}, true, ""},
		{"wrong status", HTTP{URL: srv.URL + "/broken"}, false, "answered 503, want 200: target group claims-blue has no healthy target"},
		{"problem detail", HTTP{URL: srv.URL + "/problem"}, false, "answered 502, want 200: region r1 did not answer"},
		{"expected status", HTTP{URL: srv.URL + "/broken", Status: 503}, true, ""},
		{"header matches", HTTP{URL: srv.URL + "/ok", Header: map[string]string{"X-Region": "r1"}}, true, ""},
		{"header differs", HTTP{URL: srv.URL + "/ok", Header: map[string]string{"X-Region": "r2"}}, false, `answered by X-Region "r1", want "r2"`},
		{"nothing listens", HTTP{URL: "http://" + closedAddr(t) + "/"}, false, "connection refused"},
		{"vantage cut off", HTTP{URL: srv.URL + "/ok", Dial: cutOff}, false, "vantage point cut off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.check.Check(checkCtx(t))
			if r.OK != tc.ok || !strings.Contains(r.Error, tc.err) {
				t.Fatalf("result %+v, want ok=%v error containing %q", r, tc.ok, tc.err)
			}
			if strings.Contains(r.Error, "Get ") {
				t.Errorf("error %q repeats the request", r.Error)
			}
		})
	}
}

func TestTCPCheck(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if r := (TCP{Addr: l.Addr().String()}).Check(checkCtx(t)); !r.OK {
		t.Errorf("listening: %+v", r)
	}
	if r := (TCP{Addr: closedAddr(t)}).Check(checkCtx(t)); r.OK || !strings.Contains(r.Error, "connection refused") {
		t.Errorf("closed: %+v", r)
	}
	if r := (TCP{Addr: l.Addr().String(), Dial: cutOff}).Check(checkCtx(t)); r.OK || r.Error != "vantage point cut off" {
		t.Errorf("cut off: %+v", r)
	}
}

func TestPostgresCheck(t *testing.T) {
	t.Parallel()
	dsn := testinfra.PostgresDSN(t, "probe")
	r := Postgres{DSN: dsn}.Check(checkCtx(t))
	if !r.OK || r.Role != "primary" || r.Replicating != nil || !strings.Contains(r.Detail, "0 streaming replicas") {
		t.Fatalf("primary: %+v", r)
	}

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("tandem", "not-the-password")
	r = Postgres{DSN: u.String()}.Check(checkCtx(t))
	if r.OK || !strings.Contains(r.Error, "password authentication failed") || strings.Contains(r.Error, "not-the-password") {
		t.Errorf("wrong password: %+v", r)
	}
	if r := (Postgres{DSN: dsn, Dial: cutOff}).Check(checkCtx(t)); r.OK || !strings.Contains(r.Error, "vantage point cut off") {
		t.Errorf("cut off: %+v", r)
	}
	if r := (Postgres{DSN: "postgres://tandem:secret@%zz"}).Check(checkCtx(t)); r.OK || strings.Contains(r.Error, "secret") {
		t.Errorf("bad DSN: %+v (must fail without echoing the password)", r)
	}
}

func TestRedisCheck(t *testing.T) {
	t.Parallel()
	raw := testinfra.RedisURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	r := Redis{Addr: u.Host, Password: pw}.Check(checkCtx(t))
	if !r.OK || r.Role != "primary" || !strings.Contains(r.Detail, "0 replicas") {
		t.Fatalf("primary: %+v", r)
	}
	if r := (Redis{Addr: u.Host, Password: "wrong"}).Check(checkCtx(t)); r.OK || !strings.Contains(r.Error, "WRONGPASS") {
		t.Errorf("wrong password: %+v", r)
	}
	if r := (Redis{Addr: closedAddr(t), Password: pw}).Check(checkCtx(t)); r.OK || !strings.Contains(r.Error, "connection refused") {
		t.Errorf("nothing listens: %+v", r)
	}
}

func TestParseInfoReplication(t *testing.T) {
	t.Parallel()
	info := "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:down\r\nmaster_link_down_since_seconds:7\r\n"
	f := parseInfo(info)
	if f["role"] != "slave" || f["master_link_status"] != "down" || f["master_link_down_since_seconds"] != "7" {
		t.Errorf("parsed %v", f)
	}
	if _, ok := f["# Replication"]; ok {
		t.Error("section header parsed as a field")
	}
}
