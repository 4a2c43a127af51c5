package main

import (
	"github.com/tandemhq/tandem/infra/cluster"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// regionFacts are what a region's topology entry says that is only known
// once its resources exist: endpoints and identifiers.
type regionFacts struct {
	Name    string
	Primary bool
	// ProxyURL is the region's own HTTPS name, in front of its load
	// balancer.
	ProxyURL string
	// DatabaseEndpoint is host:port of the region's database instance (the
	// primary, or the cross-region replica) and DatabaseServer its
	// identifier.
	DatabaseEndpoint string
	DatabaseServer   string
	// CacheEndpoint is host:port of the region's replication group's
	// primary endpoint and CacheServer its id.
	CacheEndpoint string
	CacheServer   string
}

// topologyDocument is the topology document infra publishes: the same
// type the operator reads from every region, filled with what is true when
// `pulumi up` finishes. The active region is the spec's primary; every
// service carries all its traffic on blue, at its count in the active
// region and at zero elsewhere. Process and state-directory fields belong
// to the local platform and stay empty.
func topologyDocument(spec *stacks.Spec, stack, frontDoorURL string, regions []regionFacts) topology.Status {
	active := spec.Primary().Name
	st := topology.Status{
		Stack:        stack,
		ActiveRegion: active,
		FrontDoor:    topology.FrontDoor{URL: frontDoorURL, ActiveRegion: active},
	}
	for _, r := range regions {
		role, dataRole := stacks.RoleSecondary, topology.RoleReplica
		if r.Primary {
			role, dataRole = stacks.RolePrimary, topology.RolePrimary
		}
		rs := topology.RegionStatus{
			Name:     r.Name,
			Role:     role,
			ProxyURL: r.ProxyURL,
		}
		if r.DatabaseServer != "" {
			rs.Database = topology.DataStatus{Role: dataRole, Endpoint: r.DatabaseEndpoint, Server: r.DatabaseServer}
		}
		if r.CacheServer != "" {
			rs.Cache = topology.DataStatus{Role: dataRole, Endpoint: r.CacheEndpoint, Server: r.CacheServer}
		}
		for _, svc := range spec.Services {
			tasks := 0
			if r.Primary {
				tasks = svc.Count
			}
			version := cluster.ImageVersion(svc.Image)
			rs.Services = append(rs.Services, topology.ServiceStatus{
				Name:    svc.Name,
				Weights: topology.Weights{Blue: 100, Green: 0},
				Colors: map[string]topology.ColorStatus{
					topology.Blue:  {Version: version, Tasks: tasks},
					topology.Green: {Version: version, Tasks: 0},
				},
			})
		}
		st.Regions = append(st.Regions, rs)
	}
	return st
}
