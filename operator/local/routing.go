package local

import (
	"bytes"
	"context"
	"io"
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
