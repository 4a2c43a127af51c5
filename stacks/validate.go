package stacks

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

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
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
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
