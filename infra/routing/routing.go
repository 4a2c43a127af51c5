// Package routing declares tandem's global routing in Route 53: for every
// region, an HTTPS health check per service on the region's load balancer
// readiness path and one calculated check that is healthy only when all of
// them are; a name per region (<region>.<domain>) for in-region calls and
// for the operator; and the platform's name (<domain>) as PRIMARY and
// SECONDARY failover alias records, each tied to its region's calculated
// check. A one-region stack gets a plain alias instead of the pair.
package routing

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Routing"

// HealthCheckOwned are the fields of a region's calculated health check
// that the operator sets to fence a region (invert) or to take it out of
// the decision (disable); `pulumi up` leaves them as the operator left them.
var HealthCheckOwned = []string{"invertHealthcheck", "disabled"}

// Region is one region's entry point.
type Region struct {
	Name string
	// Primary marks the region that answers while healthy.
	Primary bool
	// LoadBalancerDNS and LoadBalancerZoneID are the region's load
	// balancer's name and hosted zone, the alias targets.
	LoadBalancerDNS    pulumi.StringInput
	LoadBalancerZoneID pulumi.StringInput
}

// Args configures routing.
type Args struct {
	// Provider declares the Route 53 resources; Route 53 is global, and
	// its health checkers probe from several AWS regions regardless.
	Provider *aws.Provider
	Domain   string
	ZoneID   string
	// ReadinessPath is the path each service's check requests, with
	// ?service=<name> choosing the service at the load balancer.
	ReadinessPath    string
	FailureThreshold int
	Services         []string
	Regions          []Region
}

// Routing is the platform's global routing.
type Routing struct {
	pulumi.ResourceState

	// RegionHealthCheckIDs and RegionHealthCheckArns map a region to its
	// calculated health check, the one its failover record uses.
	RegionHealthCheckIDs  map[string]pulumi.IDOutput
	RegionHealthCheckArns map[string]pulumi.StringOutput
	// ServiceHealthCheckArns are the per-service checks of every region.
	ServiceHealthCheckArns []pulumi.StringOutput
}

// RegionalName is a region's own name under the platform's domain.
func RegionalName(domain, region string) string { return region + "." + domain }

// ReadinessResource is the path and query a service's health check
// requests.
func ReadinessResource(path, service string) string {
	return path + "?" + url.Values{"service": {service}}.Encode()
}

// New declares routing.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Routing, error) {
	switch {
	case args == nil || args.Provider == nil:
		return nil, errors.New("routing: a provider is required")
	case args.Domain == "" || args.ZoneID == "":
		return nil, errors.New("routing: a domain and its hosted zone are required")
	case len(args.Regions) == 0 || len(args.Regions) > 2:
		return nil, fmt.Errorf("routing: %d regions; failover routing pairs one primary with at most one secondary", len(args.Regions))
	}
	r := &Routing{RegionHealthCheckIDs: map[string]pulumi.IDOutput{}, RegionHealthCheckArns: map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource(TypeToken, name, r, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(r), pulumi.Provider(args.Provider)}

	for _, region := range args.Regions {
		var children pulumi.StringArray
		for _, svc := range args.Services {
			hc, err := route53.NewHealthCheck(ctx, name+"-"+region.Name+"-"+svc, &route53.HealthCheckArgs{
				Type:             pulumi.String("HTTPS"),
				Fqdn:             region.LoadBalancerDNS,
				Port:             pulumi.Int(443),
				ResourcePath:     pulumi.String(ReadinessResource(args.ReadinessPath, svc)),
				EnableSni:        pulumi.Bool(true),
				FailureThreshold: pulumi.Int(args.FailureThreshold),
				RequestInterval:  pulumi.Int(10),
				MeasureLatency:   pulumi.Bool(true),
				Tags: pulumi.StringMap{
					"Name":           pulumi.String(svc + " in " + region.Name),
					"tandem:service": pulumi.String(svc),
				},
			}, child...)
			if err != nil {
				return nil, fmt.Errorf("routing %s: health check of %s in %s: %w", name, svc, region.Name, err)
			}
			children = append(children, hc.ID().ToStringOutput())
			r.ServiceHealthCheckArns = append(r.ServiceHealthCheckArns, hc.Arn)
		}
		calc, err := route53.NewHealthCheck(ctx, name+"-"+region.Name, &route53.HealthCheckArgs{
			Type:                 pulumi.String("CALCULATED"),
			ChildHealthchecks:    children,
			ChildHealthThreshold: pulumi.Int(len(children)),
			Tags:                 pulumi.StringMap{"Name": pulumi.String("tandem in " + region.Name)},
		}, append(append([]pulumi.ResourceOption{}, child...), pulumi.IgnoreChanges(HealthCheckOwned))...)
		if err != nil {
			return nil, fmt.Errorf("routing %s: health check of %s: %w", name, region.Name, err)
		}
		r.RegionHealthCheckIDs[region.Name] = calc.ID()
		r.RegionHealthCheckArns[region.Name] = calc.Arn

		if _, err := route53.NewRecord(ctx, name+"-"+region.Name, &route53.RecordArgs{
			ZoneId: pulumi.String(args.ZoneID),
			Name:   pulumi.String(RegionalName(args.Domain, region.Name)),
			Type:   pulumi.String("A"),
			Aliases: route53.RecordAliasArray{&route53.RecordAliasArgs{
				Name:                 region.LoadBalancerDNS,
				ZoneId:               region.LoadBalancerZoneID,
				EvaluateTargetHealth: pulumi.Bool(true),
			}},
		}, child...); err != nil {
			return nil, fmt.Errorf("routing %s: name of %s: %w", name, region.Name, err)
		}

		record := &route53.RecordArgs{
			ZoneId: pulumi.String(args.ZoneID),
			Name:   pulumi.String(args.Domain),
			Type:   pulumi.String("A"),
			Aliases: route53.RecordAliasArray{&route53.RecordAliasArgs{
				Name:                 region.LoadBalancerDNS,
				ZoneId:               region.LoadBalancerZoneID,
				EvaluateTargetHealth: pulumi.Bool(true),
			}},
		}
		recordName := name + "-" + region.Name + "-global"
		if len(args.Regions) > 1 {
			role := "SECONDARY"
			if region.Primary {
				role = "PRIMARY"
			}
			record.SetIdentifier = pulumi.String(region.Name)
			record.HealthCheckId = calc.ID()
			record.FailoverRoutingPolicies = route53.RecordFailoverRoutingPolicyArray{
				&route53.RecordFailoverRoutingPolicyArgs{Type: pulumi.String(role)},
			}
		}
		if _, err := route53.NewRecord(ctx, recordName, record, child...); err != nil {
			return nil, fmt.Errorf("routing %s: platform record for %s: %w", name, region.Name, err)
		}
	}
	outputs := pulumi.Map{}
	for region, id := range r.RegionHealthCheckIDs {
		outputs[region+"HealthCheckId"] = id
	}
	if err := ctx.RegisterResourceOutputs(r, outputs); err != nil {
		return nil, err
	}
	return r, nil
}
