package local

import "github.com/tandemhq/tandem/operator/topology"

// The platform speaks the operator's shared types; these aliases keep the
// driver's signatures identical to what the engines' interfaces declare.
type (
	Weights       = topology.Weights
	FleetSpec     = topology.FleetSpec
	Health        = topology.Health
	Window        = topology.Window
	Status        = topology.Status
	FrontDoor     = topology.FrontDoor
	RegionStatus  = topology.RegionStatus
	DataStatus    = topology.DataStatus
	StandbyStatus = topology.StandbyStatus
	ZoneFailover  = topology.ZoneFailover
	ServiceStatus = topology.ServiceStatus
	ColorStatus   = topology.ColorStatus
)

// Colors and roles, from the shared vocabulary.
const (
	Blue        = topology.Blue
	Green       = topology.Green
	RolePrimary = topology.RolePrimary
	RoleReplica = topology.RoleReplica
	RoleFenced  = topology.RoleFenced
	RoleDown    = topology.RoleDown

	StandbySync         = topology.StandbySync
	StandbyStreaming    = topology.StandbyStreaming
	StandbyRebuilding   = topology.StandbyRebuilding
	StandbyNotStreaming = topology.StandbyNotStreaming
)
