// Package topology holds the shared vocabulary of tandem's operator: the
// topology document (what exists where: regions, services, target groups,
// database and cache endpoints, routing) and the small value types the
// engines exchange with a platform driver (weights, fleet specs, health,
// metric windows). Both drivers, AWS and local, speak these types.
package topology

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Colors of a blue/green pair.
const (
	Blue  = "blue"
	Green = "green"
)

// Database and cache roles as the status reports them.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
	RoleFenced  = "fenced"
	RoleDown    = "down"
)

// Weights is the traffic split of one service between its colors.
type Weights struct {
	Blue  int `json:"blue"`
	Green int `json:"green"`
}

// Of returns the weight of a color.
func (w Weights) Of(color string) int {
	if color == Green {
		return w.Green
	}
	return w.Blue
}

// FleetSpec is what a color of a service runs: the local counterpart of an
// ECS task definition plus desired count.
type FleetSpec struct {
	Version string            `json:"version"`
	Env     map[string]string `json:"env,omitempty"`
	Count   int               `json:"count"`
}

// Health is the target health of one color of a service in one region.
type Health struct {
	Targets int `json:"targets"`
	Healthy int `json:"healthy"`
}

// Window is what a color of a service served over a recent window.
type Window struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	P99      time.Duration `json:"p99"`
}

// Status is the platform's state as `tandem status` shows it.
type Status struct {
	Stack        string         `json:"stack"`
	StateDir     string         `json:"stateDir"`
	PID          int            `json:"pid"`
	StartedAt    time.Time      `json:"startedAt"`
	ActiveRegion string         `json:"activeRegion"`
	FrontDoor    FrontDoor      `json:"frontDoor"`
	Regions      []RegionStatus `json:"regions"`
}

// FrontDoor is the global entry point (Route 53 failover, locally).
type FrontDoor struct {
	URL          string `json:"url"`
	ActiveRegion string `json:"activeRegion"`
	Fenced       bool   `json:"fenced"`
}

// RegionStatus is one region.
type RegionStatus struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	ProxyURL string          `json:"proxyUrl"`
	Database DataStatus      `json:"database"`
	Cache    DataStatus      `json:"cache"`
	Services []ServiceStatus `json:"services"`
}

// DataStatus is a database or cache server of a region.
type DataStatus struct {
	Role     string `json:"role"`
	Endpoint string `json:"endpoint"`
	// Name names the server behind the endpoint ("local-a-az1": region
	// and zone).
	Name   string `json:"name,omitempty"`
	Server string `json:"server"`
	PID    int    `json:"pid,omitempty"`
	// Position is the WAL position (database) where known.
	Position string `json:"position,omitempty"`
	// DataDir is where the server keeps its data (local platform only).
	DataDir string `json:"dataDir,omitempty"`
	// Standby is the server's in-region standby in another zone (the
	// stack's database.multiAZ, cache.replicas), when there is one.
	Standby *StandbyStatus `json:"standby,omitempty"`
	// Failovers are the region's automatic in-region failovers, oldest
	// first.
	Failovers []ZoneFailover `json:"inRegionFailovers,omitempty"`
}

// Standby states.
const (
	// StandbySync: a database standby every commit waits for.
	StandbySync = "sync"
	// StandbyStreaming: replicating, but commits do not wait for it (a
	// cache replica, or a database standby not yet in sync).
	StandbyStreaming = "streaming"
	// StandbyRebuilding: being rebuilt after a failure or a failover.
	StandbyRebuilding = "rebuilding"
	// StandbyNotStreaming: running, but receiving nothing from the server
	// it follows (a partition, or a standby that cannot follow it).
	StandbyNotStreaming = "not streaming"
)

// StandbyStatus is an in-region standby server.
type StandbyStatus struct {
	Name    string `json:"name,omitempty"`
	Server  string `json:"server"`
	PID     int    `json:"pid,omitempty"`
	State   string `json:"state"`
	DataDir string `json:"dataDir,omitempty"`
}

// ZoneFailover is one automatic in-region failover: the standby in
// another zone took over from a server that failed (RDS Multi-AZ,
// ElastiCache automatic failover).
type ZoneFailover struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	// TookMs is from the failure being noticed to the endpoint leading to
	// the new server.
	TookMs int64 `json:"tookMs"`
}

// ServiceStatus is one service in one region.
type ServiceStatus struct {
	Name    string                 `json:"name"`
	Weights Weights                `json:"weights"`
	Colors  map[string]ColorStatus `json:"colors"`
}

// ColorStatus is one color's fleet.
type ColorStatus struct {
	Version string `json:"version"`
	Tasks   int    `json:"tasks"`
	Healthy int    `json:"healthy"`
}

// Lag is how far a database replica is behind its primary.
type Lag struct {
	Region string `json:"region"`
	// Bytes of WAL the primary has written that the replica has not replayed.
	Bytes int64 `json:"bytes"`
	// Seconds since the replica last replayed a transaction while behind
	// (0 when caught up).
	Seconds float64 `json:"seconds"`
	// Streaming says whether the replica receives WAL right now.
	Streaming bool   `json:"streaming"`
	Primary   string `json:"primaryPosition"`
	Replayed  string `json:"replayedPosition"`
}

// ParsePosition parses a PostgreSQL WAL position ("16/B374D848").
func ParsePosition(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	return h<<32 | l, nil
}
