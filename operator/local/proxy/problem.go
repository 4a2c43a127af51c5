package proxy

import (
	"encoding/json"
	"net/http"
)

// Response and request headers the platform speaks.
const (
	// HeaderColor on a request pins it to one color, like an ALB listener rule on a
	// header: the deploy engine's test traffic reaches green before any weight moves.
	HeaderColor = "X-Tandem-Color"
	// HeaderTargetGroup on a response names the target group that answered
	// ("claims-green").
	HeaderTargetGroup = "X-Tandem-Target-Group"
	// HeaderFrontDoorRegion on a response names the region the front door routed to.
	HeaderFrontDoorRegion = "X-Tandem-Front-Door-Region"
)

// problem is an RFC 9457 problem document, the error body of every answer the proxy
// gives itself.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	// The status line is already out; a client that went away cannot be told anything.
	_ = json.NewEncoder(w).Encode(problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	})
}
