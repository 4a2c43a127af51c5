// Package stacks holds tandem's typed platform spec: the one description of
// regions, services, database, cache, routing and deploy/failover policy that
// both the Pulumi program (infra/) and the embedded local platform read.
//
// A stack lives in stacks/Pulumi.<stack>.yaml under the Pulumi config key
// "tandem:platform". The Pulumi program reads the object as JSON
// (config.Get) and passes it to Decode; everything else reads the file with
// Load, which turns the YAML into the same JSON and calls Decode. One decoder
// (unknown fields rejected, defaults, Validate) means a field means the same
// thing to both targets.
package stacks

import (
	"encoding/json"
	"fmt"
	"time"
)

// ConfigKey is the Pulumi config key that holds the spec.
const ConfigKey = "tandem:platform"

// Region roles.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// Failover modes for the operator daemon.
const (
	FailoverOff       = "off"
	FailoverManual    = "manual"
	FailoverAutomatic = "automatic"
)

// Spec is the platform spec of one stack.
type Spec struct {
	// Environment names the stack's environment ("local", "dev", "prod").
	Environment string         `json:"environment"`
	Regions     []Region       `json:"regions"`
	Network     Network        `json:"network"`
	Services    []Service      `json:"services"`
	Database    Database       `json:"database"`
	Cache       Cache          `json:"cache"`
	Routing     Routing        `json:"routing"`
	Deploy      DeployPolicy   `json:"deploy"`
	Failover    FailoverPolicy `json:"failover"`
	Local       Local          `json:"local"`
	// Protection, Observability and Operator are read by the AWS program
	// only; the local platform ignores them.
	Protection    Protection    `json:"protection"`
	Observability Observability `json:"observability"`
	Operator      Operator      `json:"operator"`
}

// Region is one region of the platform and its role.
type Region struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// VPCCIDR is the region's VPC block (AWS only; ignored locally).
	VPCCIDR string `json:"vpcCidr,omitempty"`
	// CertificateARN is the ACM certificate of the region's load balancer
	// HTTPS listener (AWS only). ACM certificates are regional, so each
	// region names its own; it must cover routing.domain and
	// <region>.<routing.domain>.
	CertificateARN string `json:"certificateArn,omitempty"`
}

// Network holds the per-region network shape used by infra.
type Network struct {
	AZCount  int  `json:"azCount"`
	NATPerAZ bool `json:"natPerAz"`
}

// Service is one bundled service and how the platform runs it.
type Service struct {
	Name string `json:"name"`
	// Image is the container image (AWS); the local platform runs the binary
	// of the same name.
	Image      string `json:"image,omitempty"`
	Port       int    `json:"port"`
	Count      int    `json:"count"`
	HealthPath string `json:"healthPath"`
	// PathPrefix is the listener rule's path pattern ("/v1/claims").
	PathPrefix string `json:"pathPrefix"`
	CPU        int    `json:"cpu,omitempty"`
	MemoryMiB  int    `json:"memoryMiB,omitempty"`
	// Database says whether the service owns a database of its own name.
	Database bool `json:"database"`
	// Cache says whether the service needs REDIS_URL.
	Cache bool `json:"cache"`
	// DependsOn lists services whose URL the service receives
	// (eligibility → ELIGIBILITY_URL).
	DependsOn []string `json:"dependsOn,omitempty"`
	// Smoke is the request a deploy sends to the new color (pinned by
	// header, before any weight moves) to check it answers as expected.
	Smoke *Smoke `json:"smoke,omitempty"`
	// MaxCount is the most tasks autoscaling may run per color (AWS only);
	// it defaults to three times count.
	MaxCount int `json:"maxCount,omitempty"`
}

// Smoke is one synthetic request and the status it must get.
type Smoke struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
	Status int    `json:"status"`
}

// Database is the PostgreSQL cluster.
type Database struct {
	EngineVersion      string   `json:"engineVersion"`
	InstanceClass      string   `json:"instanceClass,omitempty"`
	AllocatedStorageGB int      `json:"allocatedStorageGB,omitempty"`
	MultiAZ            bool     `json:"multiAZ"`
	ReadReplicas       int      `json:"readReplicas"`
	CrossRegionReplica bool     `json:"crossRegionReplica"`
	MaxReplicaLag      Duration `json:"maxReplicaLag"`
	// BackupRetentionDays is how long automated backups are kept (AWS only;
	// default 7, 1 to 35).
	BackupRetentionDays int `json:"backupRetentionDays,omitempty"`
}

// Cache is the Redis replication group.
type Cache struct {
	NodeType        string `json:"nodeType,omitempty"`
	Replicas        int    `json:"replicas"`
	GlobalDatastore bool   `json:"globalDatastore"`
	// EngineVersion is the Redis version of the replication group (AWS
	// only; default "7.1").
	EngineVersion string `json:"engineVersion,omitempty"`
	// SnapshotRetentionDays is how long daily snapshots are kept (AWS only;
	// default 7, 1 to 35).
	SnapshotRetentionDays int `json:"snapshotRetentionDays,omitempty"`
}

// Routing is global routing between regions (Route 53 failover locally
// played by the front door).
type Routing struct {
	// Domain is the platform's public name (AWS). Route 53 answers it with
	// the active region's load balancer, and <region>.<domain> with each
	// region's own.
	Domain string `json:"domain,omitempty"`
	// HostedZoneID is the Route 53 public hosted zone that holds Domain
	// (AWS only).
	HostedZoneID     string   `json:"hostedZoneId,omitempty"`
	HealthCheckPath  string   `json:"healthCheckPath"`
	FailureThreshold int      `json:"failureThreshold"`
	DNSTTL           Duration `json:"dnsTTL"`
}

// DeployPolicy holds blue/green deploy defaults.
type DeployPolicy struct {
	// Steps are the green weights to shift through, ending at 100.
	Steps          []int    `json:"steps"`
	StepBake       Duration `json:"stepBake"`
	HealthyTimeout Duration `json:"healthyTimeout"`
	DrainTimeout   Duration `json:"drainTimeout"`
	ScaleDownDelay Duration `json:"scaleDownDelay"`
	MaxErrorRate   float64  `json:"maxErrorRate"`
	MinSamples     int      `json:"minSamples"`
	// AnalysisTimeout bounds how long a step may stay inconclusive.
	AnalysisTimeout Duration `json:"analysisTimeout"`
	// MaxErrorRateIncrease is how much the new color's error rate may
	// exceed the old color's in the same window.
	MaxErrorRateIncrease float64 `json:"maxErrorRateIncrease"`
	// MaxP99 is the new color's absolute p99 latency limit.
	MaxP99 Duration `json:"maxP99"`
	// MaxP99Ratio is how many times the old color's p99 (plus 100ms) the
	// new color's may reach.
	MaxP99Ratio float64 `json:"maxP99Ratio"`
	// Bake is how long the new color carries all traffic, still analysed,
	// before it is promoted.
	Bake Duration `json:"bake"`
	// OnDeadline is what a phase deadline does: "rollback" or "hold"
	// (hold traffic where it is and alert a person).
	OnDeadline string `json:"onDeadline"`
	// LeaseTTL is how long a deploy's lease outlives a silent operator.
	LeaseTTL Duration `json:"leaseTTL"`
}

// Deadline actions.
const (
	OnDeadlineRollback = "rollback"
	OnDeadlineHold     = "hold"
)

// FailoverPolicy holds region failover defaults.
type FailoverPolicy struct {
	Mode             string   `json:"mode"`
	MaxReplicaLag    Duration `json:"maxReplicaLag"`
	ProbeInterval    Duration `json:"probeInterval"`
	FailureThreshold int      `json:"failureThreshold"`
	SuccessThreshold int      `json:"successThreshold"`
	CatchUpTimeout   Duration `json:"catchUpTimeout"`
	// MinInterval is the least time between two automatic failovers.
	MinInterval Duration `json:"minInterval"`
}

// Local holds knobs of the embedded local platform only.
type Local struct {
	// MaxTasks caps each service's task count on one machine.
	MaxTasks int `json:"maxTasks"`
}

// Protection says what survives a mistaken delete or `pulumi destroy` (AWS
// only). Every flag defaults to on; a disposable stack such as dev turns
// them off explicitly, so a new stack file is protected unless it says
// otherwise.
type Protection struct {
	// DeletionProtection turns on deletion protection of the load balancers,
	// databases and the operator's state table, and Pulumi's protect on the
	// stateful resources and keys.
	DeletionProtection *bool `json:"deletionProtection,omitempty"`
	// FinalSnapshot keeps a final snapshot of the database and the cache
	// when they are deleted.
	FinalSnapshot *bool `json:"finalSnapshot,omitempty"`
	// AccessLogs keeps load balancer access logs in S3.
	AccessLogs *bool `json:"accessLogs,omitempty"`
}

// Deletion reports whether deletion protection is on.
func (p Protection) Deletion() bool { return p.DeletionProtection == nil || *p.DeletionProtection }

// Snapshot reports whether final snapshots are kept.
func (p Protection) Snapshot() bool { return p.FinalSnapshot == nil || *p.FinalSnapshot }

// Logs reports whether load balancer access logs are kept.
func (p Protection) Logs() bool { return p.AccessLogs == nil || *p.AccessLogs }

// Observability configures alarms and log retention (AWS only).
type Observability struct {
	// AlarmEmail, when set, is subscribed to every region's alarm topic.
	AlarmEmail string `json:"alarmEmail,omitempty"`
	// LogRetentionDays is how long service, flow and database logs are
	// kept; one of CloudWatch Logs' retention periods (default 30).
	LogRetentionDays int `json:"logRetentionDays,omitempty"`
	// LatencyThreshold is the p99 target response time above which the
	// latency alarm fires (default 1s).
	LatencyThreshold Duration `json:"latencyThreshold"`
}

// Operator configures the operator's AWS access (AWS only).
type Operator struct {
	// TrustedPrincipals are the IAM roles or users (ARNs) allowed to assume
	// the operator role, such as the CI role that runs deploys. The
	// account's own principals with sts:AssumeRole on the role can always
	// assume it.
	TrustedPrincipals []string `json:"trustedPrincipals,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5s").
type Duration struct{ time.Duration }

// D builds a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "1m30s"-style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string such as \"5s\", got %q", s)
	}
	d.Duration = v
	return nil
}

// Primary returns the primary region.
func (s *Spec) Primary() Region {
	for _, r := range s.Regions {
		if r.Role == RolePrimary {
			return r
		}
	}
	return Region{}
}

// Region returns the named region.
func (s *Spec) Region(name string) (Region, bool) {
	for _, r := range s.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// Service returns the named service.
func (s *Spec) Service(name string) (Service, bool) {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

// RegionNames lists the region names in spec order.
func (s *Spec) RegionNames() []string {
	out := make([]string, len(s.Regions))
	for i, r := range s.Regions {
		out[i] = r.Name
	}
	return out
}

// ServiceNames lists the service names in spec order.
func (s *Spec) ServiceNames() []string {
	out := make([]string, len(s.Services))
	for i, svc := range s.Services {
		out[i] = svc.Name
	}
	return out
}
