package stacks

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Patterns of the AWS-only fields.
var (
	// certificatePattern captures the region of an ACM certificate ARN.
	certificatePattern = regexp.MustCompile(`^arn:aws[a-z-]*:acm:([a-z0-9-]+):[0-9]{12}:certificate/[A-Za-z0-9-]+$`)
	hostedZonePattern  = regexp.MustCompile(`^Z[A-Z0-9]{1,32}$`)
	domainPattern      = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	principalPattern   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/[A-Za-z0-9+=,.@_/-]+|user/[A-Za-z0-9+=,.@_/-]+)$`)
	awsRegionPattern   = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`)
	// cacheVersionPattern captures the major version of a Redis version.
	cacheVersionPattern = regexp.MustCompile(`^([0-9]+)\.[0-9]+$`)
)

// logRetentionDays are the retention periods CloudWatch Logs accepts.
var logRetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// ValidationError lists every problem found in a spec, each naming its field
// and the fix, so one run shows them all.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid platform spec: " + e.Problems[0]
	}
	return "invalid platform spec:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Validate checks the spec as a whole. Defaults must already be applied
// (Decode and Load do that).
func (s *Spec) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if s.Environment == "" {
		add(`environment: missing; set it to the stack's name, e.g. "local"`)
	} else if !namePattern.MatchString(s.Environment) {
		add(`environment: %q must be lower-case letters, digits and dashes`, s.Environment)
	}

	primaries := 0
	seenRegion := map[string]bool{}
	if len(s.Regions) == 0 {
		add("regions: missing; list at least one region with role primary")
	}
	for i, r := range s.Regions {
		f := fmt.Sprintf("regions[%d]", i)
		switch {
		case r.Name == "":
			add("%s.name: missing; name the region (e.g. us-east-1 or local-a)", f)
		case !namePattern.MatchString(r.Name):
			add("%s.name: %q must be lower-case letters, digits and dashes", f, r.Name)
		case seenRegion[r.Name]:
			add("%s.name: region %q is listed twice", f, r.Name)
		}
		seenRegion[r.Name] = true
		switch r.Role {
		case RolePrimary:
			primaries++
		case RoleSecondary:
		case "":
			add("%s.role: missing; use %q or %q", f, RolePrimary, RoleSecondary)
		default:
			add("%s.role: %q is not a role; use %q or %q", f, r.Role, RolePrimary, RoleSecondary)
		}
	}
	if len(s.Regions) > 0 && primaries != 1 {
		add("regions: exactly one region must have role %q (found %d)", RolePrimary, primaries)
	}
	if s.Network.AZCount < 1 || s.Network.AZCount > 6 {
		add("network.azCount: %d is out of range; use 1 to 6", s.Network.AZCount)
	}

	seenSvc := map[string]bool{}
	seenPort := map[int]string{}
	if len(s.Services) == 0 {
		add("services: missing; list at least one service")
	}
	for i, svc := range s.Services {
		f := fmt.Sprintf("services[%d]", i)
		switch {
		case svc.Name == "":
			add("%s.name: missing", f)
		case !namePattern.MatchString(svc.Name):
			add("%s.name: %q must be lower-case letters, digits and dashes", f, svc.Name)
		case seenSvc[svc.Name]:
			add("%s.name: service %q is listed twice", f, svc.Name)
		}
		seenSvc[svc.Name] = true
		if svc.Port < 1 || svc.Port > 65535 {
			add("%s.port: %d is out of range; use 1 to 65535", f, svc.Port)
		} else if other, dup := seenPort[svc.Port]; dup {
			add("%s.port: %d is already used by service %q", f, svc.Port, other)
		} else {
			seenPort[svc.Port] = svc.Name
		}
		if svc.Count < 1 || svc.Count > 100 {
			add("%s.count: %d is out of range; use 1 to 100 tasks", f, svc.Count)
		}
		if !strings.HasPrefix(svc.HealthPath, "/") {
			add("%s.healthPath: %q must start with /", f, svc.HealthPath)
		}
		if !strings.HasPrefix(svc.PathPrefix, "/") || len(svc.PathPrefix) < 2 {
			add("%s.pathPrefix: %q must be a path such as /v1/%s", f, svc.PathPrefix, svc.Name)
		}
		if sm := svc.Smoke; sm != nil {
			switch sm.Method {
			case "GET", "POST", "PUT", "HEAD":
			default:
				add("%s.smoke.method: %q is not supported; use GET, POST, PUT or HEAD", f, sm.Method)
			}
			if !strings.HasPrefix(sm.Path, svc.PathPrefix) {
				add("%s.smoke.path: %q must start with the service's pathPrefix %q so the proxy routes it", f, sm.Path, svc.PathPrefix)
			}
			if sm.Status < 100 || sm.Status > 599 {
				add("%s.smoke.status: %d is not an HTTP status", f, sm.Status)
			}
		}
	}
	for i, svc := range s.Services {
		for _, dep := range svc.DependsOn {
			if !seenSvc[dep] {
				add("services[%d].dependsOn: %q is not a service of this stack", i, dep)
			}
		}
	}

	if s.Database.ReadReplicas < 0 || s.Database.ReadReplicas > 5 {
		add("database.readReplicas: %d is out of range; use 0 to 5", s.Database.ReadReplicas)
	}
	if s.Database.CrossRegionReplica && len(s.Regions) < 2 {
		add("database.crossRegionReplica: needs a secondary region; add one or set it to false")
	}
	if s.Cache.Replicas < 0 || s.Cache.Replicas > 5 {
		add("cache.replicas: %d is out of range; use 0 to 5", s.Cache.Replicas)
	}
	if s.Cache.GlobalDatastore && len(s.Regions) < 2 {
		add("cache.globalDatastore: needs a secondary region; add one or set it to false")
	}
	if s.Routing.FailureThreshold < 1 || s.Routing.FailureThreshold > 10 {
		add("routing.failureThreshold: %d is out of range; use 1 to 10", s.Routing.FailureThreshold)
	}
	if s.Routing.DNSTTL.Duration < 0 {
		add("routing.dnsTTL: must not be negative")
	}

	if err := ValidateSteps(s.Deploy.Steps); err != nil {
		add("deploy.steps: %v", err)
	}
	if s.Deploy.MaxErrorRate < 0 || s.Deploy.MaxErrorRate > 1 {
		add("deploy.maxErrorRate: %g is out of range; use a fraction from 0 to 1", s.Deploy.MaxErrorRate)
	}
	if s.Deploy.MaxErrorRateIncrease < 0 || s.Deploy.MaxErrorRateIncrease > 1 {
		add("deploy.maxErrorRateIncrease: %g is out of range; use a fraction from 0 to 1", s.Deploy.MaxErrorRateIncrease)
	}
	if s.Deploy.MaxP99Ratio < 1 {
		add("deploy.maxP99Ratio: %g must be at least 1", s.Deploy.MaxP99Ratio)
	}
	switch s.Deploy.OnDeadline {
	case OnDeadlineRollback, OnDeadlineHold:
	default:
		add("deploy.onDeadline: %q is not an action; use %q or %q", s.Deploy.OnDeadline, OnDeadlineRollback, OnDeadlineHold)
	}
	if s.Deploy.LeaseTTL.Duration < time.Second {
		add("deploy.leaseTTL: %s is too short; use at least 1s", s.Deploy.LeaseTTL.Duration)
	}
	for _, d := range []struct {
		name string
		d    Duration
	}{{"stepBake", s.Deploy.StepBake}, {"healthyTimeout", s.Deploy.HealthyTimeout}, {"drainTimeout", s.Deploy.DrainTimeout},
		{"analysisTimeout", s.Deploy.AnalysisTimeout}, {"bake", s.Deploy.Bake}, {"scaleDownDelay", s.Deploy.ScaleDownDelay}, {"maxP99", s.Deploy.MaxP99}} {
		if d.d.Duration < 0 {
			add("deploy.%s: must not be negative", d.name)
		}
	}
	if s.Deploy.AnalysisTimeout.Duration < s.Deploy.StepBake.Duration {
		add("deploy.analysisTimeout: %s is shorter than deploy.stepBake %s; a step could never be judged", s.Deploy.AnalysisTimeout.Duration, s.Deploy.StepBake.Duration)
	}
	if s.Deploy.MinSamples < 1 {
		add("deploy.minSamples: %d must be at least 1", s.Deploy.MinSamples)
	}
	switch s.Failover.Mode {
	case FailoverOff, FailoverManual, FailoverAutomatic:
	default:
		add("failover.mode: %q is not a mode; use %q, %q or %q", s.Failover.Mode, FailoverOff, FailoverManual, FailoverAutomatic)
	}
	if s.Failover.FailureThreshold < 1 || s.Failover.SuccessThreshold < 1 {
		add("failover.failureThreshold and failover.successThreshold must be at least 1")
	}
	if s.Local.MaxTasks < 1 || s.Local.MaxTasks > 8 {
		add("local.maxTasks: %d is out of range; use 1 to 8", s.Local.MaxTasks)
	}
	p = append(p, s.awsFieldProblems()...)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// awsFieldProblems checks the fields only the AWS program reads, when they
// are set. Whether they must be set is ValidateAWS's business, so a local
// stack never has to mention them.
func (s *Spec) awsFieldProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	for i, r := range s.Regions {
		if r.CertificateARN == "" {
			continue
		}
		m := certificatePattern.FindStringSubmatch(r.CertificateARN)
		switch {
		case m == nil:
			add("regions[%d].certificateArn: %q is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)", i, r.CertificateARN)
		case m[1] != r.Name:
			add("regions[%d].certificateArn: the certificate is in %s but the region is %s; a load balancer can only use a certificate of its own region", i, m[1], r.Name)
		}
	}
	for i, svc := range s.Services {
		if svc.Count >= 1 && svc.Count <= 100 && (svc.MaxCount < svc.Count || svc.MaxCount > 100) {
			add("services[%d].maxCount: %d is out of range; use %d (count) to 100", i, svc.MaxCount, svc.Count)
		}
	}
	if d := s.Database.BackupRetentionDays; d < 1 || d > 35 {
		add("database.backupRetentionDays: %d is out of range; use 1 to 35", d)
	}
	if m := cacheVersionPattern.FindStringSubmatch(s.Cache.EngineVersion); m == nil {
		add("cache.engineVersion: %q is not a Redis version; write major.minor, e.g. \"7.1\"", s.Cache.EngineVersion)
	} else if major, _ := strconv.Atoi(m[1]); major < 7 {
		add("cache.engineVersion: %q is too old; use 7.0 or newer (in-transit encryption that refuses plain-text clients needs Redis 7)", s.Cache.EngineVersion)
	}
	if d := s.Cache.SnapshotRetentionDays; d < 1 || d > 35 {
		add("cache.snapshotRetentionDays: %d is out of range; use 1 to 35", d)
	}
	if s.Routing.Domain != "" && !domainPattern.MatchString(s.Routing.Domain) {
		add("routing.domain: %q is not a lower-case DNS name such as api.example.org", s.Routing.Domain)
	}
	if s.Routing.HostedZoneID != "" && !hostedZonePattern.MatchString(s.Routing.HostedZoneID) {
		add("routing.hostedZoneId: %q is not a Route 53 hosted zone id (Z followed by upper-case letters and digits)", s.Routing.HostedZoneID)
	}
	if e := s.Observability.AlarmEmail; e != "" {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			add("observability.alarmEmail: %q is not a plain e-mail address such as oncall@example.org", e)
		}
	}
	if !slices.Contains(logRetentionDays, s.Observability.LogRetentionDays) {
		add("observability.logRetentionDays: %d is not a CloudWatch Logs retention period; use one of %v", s.Observability.LogRetentionDays, logRetentionDays)
	}
	if t := s.Observability.LatencyThreshold.Duration; t < 10*time.Millisecond || t > time.Minute {
		add("observability.latencyThreshold: %s is out of range; use 10ms to 1m", t)
	}
	for i, arn := range s.Operator.TrustedPrincipals {
		if !principalPattern.MatchString(arn) {
			add("operator.trustedPrincipals[%d]: %q is not an IAM role, user or account root ARN", i, arn)
		}
	}
	return p
}

// ValidateAWS checks what the AWS program needs beyond Validate: values
// that are optional for the local platform but that AWS cannot do without
// (certificates, DNS, images, sizes), and limits of the AWS services the
// platform is built from. Each problem names the field and the fix; values
// that belong to one AWS account are set with `pulumi config set --path`.
func (s *Spec) ValidateAWS() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	setPath := func(path, example string) string {
		return fmt.Sprintf("pulumi config set --path '%s.%s' %s", ConfigKey, path, example)
	}

	if len(s.Regions) > 2 {
		add("regions: %d regions listed; an AWS stack has a primary and at most one secondary (Route 53 failover records come in pairs)", len(s.Regions))
	}
	cidrs := map[int]netip.Prefix{}
	for i, r := range s.Regions {
		f := fmt.Sprintf("regions[%d]", i)
		if !awsRegionPattern.MatchString(r.Name) {
			add("%s.name: %q is not an AWS region; use a region name such as us-east-1", f, r.Name)
			continue
		}
		if r.CertificateARN == "" {
			add("%s.certificateArn: missing; issue an ACM certificate in %s for routing.domain and *.<routing.domain>, then run: %s",
				f, r.Name, setPath(f+".certificateArn", "arn:aws:acm:"+r.Name+":<account>:certificate/<id>"))
		}
		cidr := r.VPCCIDR
		if cidr == "" {
			cidr = DefaultVPCCIDR
		}
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil {
			continue // the network plan reports it with its fix
		}
		for j := 0; j < i; j++ {
			if other, ok := cidrs[j]; ok && other.Overlaps(pfx) {
				add("%s.vpcCidr: %s overlaps regions[%d]'s %s; give each region a block of its own so that the VPCs can be peered", f, pfx, j, other)
			}
		}
		cidrs[i] = pfx
	}
	if len(s.Regions) > 1 {
		if !s.Database.CrossRegionReplica {
			add("database.crossRegionReplica: false, but the stack has a secondary region; set it to true, or the secondary has no database to fail over to")
		}
		if !s.Cache.GlobalDatastore {
			add("cache.globalDatastore: false, but the stack has a secondary region; set it to true, or the secondary has no cache to fail over to")
		}
	}
	if s.Routing.Domain == "" {
		add("routing.domain: missing; the load balancers serve HTTPS under this name; run: %s", setPath("routing.domain", "api.example.org"))
	}
	if s.Routing.HostedZoneID == "" {
		add("routing.hostedZoneId: missing; name the public hosted zone that holds routing.domain; run: %s", setPath("routing.hostedZoneId", "Z0123456789ABCDEFGHIJ"))
	}
	for i, svc := range s.Services {
		f := fmt.Sprintf("services[%d]", i)
		if svc.Image == "" {
			add("%s.image: missing; name the container image of %s (registry/repository:tag)", f, svc.Name)
		}
		if msg := fargateSize(svc.CPU, svc.MemoryMiB); msg != "" {
			add("%s.%s", f, msg)
		}
	}
	if s.Database.InstanceClass == "" {
		add("database.instanceClass: missing; choose an RDS instance class, e.g. db.t4g.medium for dev or db.r6g.large for prod")
	} else if !strings.HasPrefix(s.Database.InstanceClass, "db.") {
		add("database.instanceClass: %q is not an RDS instance class such as db.r6g.large", s.Database.InstanceClass)
	}
	if s.Database.AllocatedStorageGB < 20 || s.Database.AllocatedStorageGB > 65536 {
		add("database.allocatedStorageGB: %d is out of range; use 20 to 65536", s.Database.AllocatedStorageGB)
	}
	switch nt := s.Cache.NodeType; {
	case nt == "":
		add("cache.nodeType: missing; choose an ElastiCache node type, e.g. cache.t4g.small for dev or cache.r7g.large for prod")
	case !strings.HasPrefix(nt, "cache."):
		add("cache.nodeType: %q is not an ElastiCache node type such as cache.r7g.large", nt)
	case s.Cache.GlobalDatastore && strings.HasPrefix(nt, "cache.t"):
		add("cache.nodeType: %s cannot join a Global Datastore; use an m or r node type such as cache.r7g.large, or set cache.globalDatastore to false", nt)
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// DefaultVPCCIDR is the VPC block of a region whose spec sets no vpcCidr.
const DefaultVPCCIDR = "10.0.0.0/16"

// fargateCPU lists, for each Fargate CPU size, the memory sizes (MiB) it
// accepts: from, to and step.
var fargateCPU = map[int][3]int{
	256:   {512, 2048, 512},
	512:   {1024, 4096, 1024},
	1024:  {2048, 8192, 1024},
	2048:  {4096, 16384, 1024},
	4096:  {8192, 30720, 1024},
	8192:  {16384, 61440, 4096},
	16384: {32768, 122880, 8192},
}

// fargateSize says what is wrong with a task size, or "" when Fargate
// accepts it. The message starts with the field name.
func fargateSize(cpu, mem int) string {
	r, ok := fargateCPU[cpu]
	if !ok {
		return fmt.Sprintf("cpu: %d is not a Fargate task size; use 256, 512, 1024, 2048, 4096, 8192 or 16384", cpu)
	}
	if mem == 256 && cpu == 256 {
		return ""
	}
	if mem < r[0] || mem > r[1] || (mem-r[0])%r[2] != 0 {
		return fmt.Sprintf("memoryMiB: %d does not fit cpu %d on Fargate; use %d to %d in steps of %d", mem, cpu, r[0], r[1], r[2])
	}
	return ""
}

// ValidateSteps checks a list of green weights: strictly increasing, each
// 1..100, ending at 100.
func ValidateSteps(steps []int) error {
	if len(steps) == 0 {
		return errors.New("no steps; give increasing green weights ending at 100, e.g. 25,50,100")
	}
	prev := 0
	for _, w := range steps {
		if w < 1 || w > 100 {
			return fmt.Errorf("weight %d is out of range; each step must be 1 to 100", w)
		}
		if w <= prev {
			return fmt.Errorf("weights must increase (%d after %d)", w, prev)
		}
		prev = w
	}
	if prev != 100 {
		return fmt.Errorf("the last step is %d; it must be 100", prev)
	}
	return nil
}
