package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// maxBufferedBody is the largest request body the proxy holds in memory so that it
	// can replay the request on another target. Larger bodies are refused rather than
	// streamed, because a streamed body could not be retried safely.
	maxBufferedBody = 1 << 20
	// maxRetries bounds the extra attempts of one request.
	maxRetries = 2
	// upstreamTimeout mirrors the ALB's default idle timeout: a target that has not
	// started its answer by then gets a 504.
	upstreamTimeout = 60 * time.Second
	// statusClientClosed records a request whose client went away before the answer
	// (nginx's 499); it is not an error of the target group.
	statusClientClosed = 499
)

// newTransport returns the connection pool shared by all forwarding and health checks of
// one Router or FrontDoor, tuned for loopback: many warm keep-alive connections per
// target, a short dial timeout (a refused dial is immediate anyway), and an idle timeout
// below what the services' own servers use, so the proxy normally closes an idle
// connection before the target does and rarely picks one the target is closing.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: upstreamTimeout,
		ExpectContinueTimeout: time.Second,
		// A proxy passes Accept-Encoding and compressed bodies through untouched.
		DisableCompression: true,
	}
}

type attemptKey struct{}

// attempt is one try of a request against one upstream. The ReverseProxy hooks find it
// in the request context: they send the request to upstream, stamp the response with
// header, and record the error; the trace flags tell whether the upstream can have seen
// the request, which decides if another try is safe.
type attempt struct {
	upstream *url.URL
	header   string
	value    string
	// replayable says the application tolerates receiving the request twice.
	replayable bool

	err                                        error
	gotConn, reused, wroteHeaders, gotResponse atomic.Bool
}

func (a *attempt) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			a.gotConn.Store(true)
			if info.Reused {
				a.reused.Store(true)
			}
		},
		WroteHeaders:         func() { a.wroteHeaders.Store(true) },
		GotFirstResponseByte: func() { a.gotResponse.Store(true) },
	}
}

// safeToRetry reports whether the failed attempt may be sent again. Any request may,
// when the attempt certainly did not reach the application: no connection was made,
// nothing was written, or the target had closed the pooled connection as idle. A
// replayable request also may when the connection broke before any answer arrived (a
// target exiting with the request half written); a timeout is never retried, since the
// target may still be working on it and a retry would double the load of a slow target.
func (a *attempt) safeToRetry() bool {
	switch {
	case a.err == nil:
		return false
	case isDialError(a.err), !a.gotConn.Load(), !a.wroteHeaders.Load():
		return true
	case a.gotResponse.Load():
		return false
	case a.reused.Load() && isServerClosedIdle(a.err):
		return true
	case a.replayable && gatewayStatus(a.err) != http.StatusGatewayTimeout:
		return true
	}
	return false
}

// replayable reports whether req may reach the application twice: a safe method, or a
// write carrying an idempotency key, which the services deduplicate. It is the rule
// net/http's client applies to its own retries.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isServerClosedIdle recognises net/http's report that the target closed a pooled
// connection while it was idle, i.e. before reading the request written on it: a target
// shutting down or exiting. The error value is not exported, so its text is matched.
func isServerClosedIdle(err error) bool {
	return strings.Contains(err.Error(), "server closed idle connection")
}

// gatewayStatus maps a failed attempt to the status the client gets.
func gatewayStatus(err error) int {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// newReverseProxy returns the forwarding engine of a Router or FrontDoor. The upstream of
// each request comes from its attempt; errors are handed back to the caller through the
// attempt instead of being answered, so that the caller can try elsewhere.
func newReverseProxy(transport http.RoundTripper, log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(attemptKey{}).(*attempt)
			pr.SetURL(a.upstream)
			// An ALB keeps the client's Host and appends to X-Forwarded-For.
			pr.Out.Host = pr.In.Host
			if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = prior
			}
			pr.SetXForwarded()
			// The body is already buffered: the client has had its 100 Continue.
			pr.Out.Header.Del("Expect")
		},
		ModifyResponse: func(resp *http.Response) error {
			a := resp.Request.Context().Value(attemptKey{}).(*attempt)
			resp.Header.Set(a.header, a.value)
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, req *http.Request, err error) {
			req.Context().Value(attemptKey{}).(*attempt).err = err
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

var errBodyTooLarge = fmt.Errorf("request body exceeds %d bytes", maxBufferedBody)

// bufferBody reads the request body into memory so that it can be replayed. It returns
// the status to answer with when the body cannot be taken.
func bufferBody(req *http.Request) ([]byte, int, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, 0, nil
	}
	if req.ContentLength > maxBufferedBody {
		return nil, http.StatusRequestEntityTooLarge, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBufferedBody+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxBufferedBody {
		return nil, http.StatusRequestEntityTooLarge, errBodyTooLarge
	}
	return body, 0, nil
}

// attemptRequest prepares req for one attempt: its own context carrying a, and a fresh
// reader over the buffered body.
func attemptRequest(req *http.Request, body []byte, a *attempt) *http.Request {
	ctx := context.WithValue(req.Context(), attemptKey{}, a)
	ctx = httptrace.WithClientTrace(ctx, a.trace())
	out := req.WithContext(ctx)
	out.TransferEncoding = nil
	if len(body) == 0 {
		out.Body, out.GetBody, out.ContentLength = http.NoBody, nil, 0
		return out
	}
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.Body, _ = out.GetBody()
	out.ContentLength = int64(len(body))
	return out
}

// statusWriter remembers the final status written to the client.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// Informational answers (100, 103) precede the final one; 101 is final for an upgrade.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (used by ReverseProxy) reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
