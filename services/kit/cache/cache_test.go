package cache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quick = retry.Policy{Budget: 300 * time.Millisecond, First: 10 * time.Millisecond, Max: 50 * time.Millisecond}

func TestConnect(t *testing.T) {
	t.Parallel()
	c, err := Connect(t.Context(), logging.Discard(), testinfra.RedisURL(t), quick)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer c.Close()
	if err := c.Set(t.Context(), "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET on the connected client: %v", err)
	}
}

func TestConnectFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
	}{
		{name: "not a redis url", url: "http://:s3cret@127.0.0.1:6379/0"},
		{name: "nothing listens", url: "redis://:s3cret@127.0.0.1:1/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Connect(context.Background(), logging.Discard(), tt.url, quick)
			if err == nil {
				t.Fatal("want an error")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}
