package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/tandemhq/tandem/services/kit/config"
)

func TestNewTagsIdentity(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, "claims", config.Base{Region: "us-west-2", Color: "green", Version: "v7"})
	l.Info("claim stored", "claimId", "c-1")

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, buf.String())
	}
	want := map[string]string{
		"msg": "claim stored", "service": "claims", "region": "us-west-2",
		"color": "green", "version": "v7", "claimId": "c-1",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %q", k, line[k], v)
		}
	}
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	l := Discard()
	if got := FromContext(WithLogger(context.Background(), l)); got != l {
		t.Error("FromContext did not return the stored logger")
	}
	if FromContext(context.Background()) == nil {
		t.Error("FromContext returned nil for a bare context")
	}
}
