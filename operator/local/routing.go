package local

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tandemhq/tandem/operator/local/proxy"
)

// Route points the front door at a region (the Route 53 failover record
// moving, locally); it clears the routing fence.
func (p *Platform) Route(ctx context.Context, regionName string) error {
	if _, err := p.region(regionName); err != nil {
		return err
	}
	return p.front.SetActive(regionName)
}

// FenceRouting stops the front door sending traffic to any region: the
// mandatory first fence of a failover.
func (p *Platform) FenceRouting(ctx context.Context) error {
	p.front.Fence()
	return nil
}

// ActiveRegion returns the region the front door routes to.
func (p *Platform) ActiveRegion(ctx context.Context) (string, error) {
	r, _ := p.front.Active()
	return r, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Smoke sends the service's smoke request (stacks.Smoke) to one color
// through the region's proxy, pinned by the X-Tandem-Color header, once per
// target and then once more; every answer must have the expected status.
// Without a smoke request in the spec, every target must pass its health
// check instead.
func (p *Platform) Smoke(ctx context.Context, regionName, service, color string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	svc, err := p.service(service)
	if err != nil {
		return err
	}
	h := r.router.Health(service, proxy.Color(color))
	if h.Targets == 0 {
		return fmt.Errorf("smoke %s of %s in %s: no targets", color, service, regionName)
	}
	if svc.Smoke == nil {
		if h.Healthy != h.Targets {
			return fmt.Errorf("smoke %s of %s in %s: %d of %d targets healthy", color, service, regionName, h.Healthy, h.Targets)
		}
		return nil
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i <= h.Targets; i++ {
		req, err := http.NewRequestWithContext(ctx, svc.Smoke.Method, r.url+svc.Smoke.Path, strings.NewReader(svc.Smoke.Body))
		if err != nil {
			return err
		}
		if svc.Smoke.Body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set(proxy.HeaderColor, color)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("smoke %s of %s in %s: %w", color, service, regionName, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != svc.Smoke.Status {
			return fmt.Errorf("smoke %s of %s in %s: %s %s answered %d, want %d: %s", color, service, regionName,
				svc.Smoke.Method, svc.Smoke.Path, resp.StatusCode, svc.Smoke.Status, bytes.TrimSpace(body))
		}
	}
	return nil
}
