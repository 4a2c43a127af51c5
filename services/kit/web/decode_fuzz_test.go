package web

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeJSON feeds arbitrary bodies and content types to the strict
// decoder every service uses: it either fills the target or returns a 4xx
// problem (400, 413 or 415), never a 5xx and never a panic. The seed corpus
// is in testdata/fuzz/FuzzDecodeJSON.
func FuzzDecodeJSON(f *testing.F) {
	f.Add("application/json", []byte(`{"name":"a","count":2}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		var dst sample
		err := DecodeJSON(httptest.NewRecorder(), r, &dst, 256)
		if err == nil {
			if len(body) > 256 {
				t.Fatalf("accepted a %d-byte body with a 256-byte limit", len(body))
			}
			return
		}
		var p *Problem
		if !errors.As(err, &p) {
			t.Fatalf("error %v is not a problem", err)
		}
		switch p.Status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("status %d for %q: %s", p.Status, body, p.Detail)
		}
	})
}
