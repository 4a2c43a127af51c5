// Package cluster declares the ECS cluster of one tandem region, where the
// services run as Fargate tasks and the operator scales blue and green.
package cluster

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Cluster"

// Args configures a Cluster.
type Args struct {
	// Provider is the AWS provider of the region; the cluster is declared
	// through it.
	Provider *aws.Provider
}

// Cluster is the ECS cluster of one region.
type Cluster struct {
	pulumi.ResourceState

	Arn  pulumi.StringOutput
	Name pulumi.StringOutput
}

// New declares the ECS cluster of a region.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("cluster: a region provider is required")
	}
	c := &Cluster{}
	if err := ctx.RegisterComponentResource(TypeToken, name, c, opts...); err != nil {
		return nil, err
	}
	ecsCluster, err := ecs.NewCluster(ctx, name, &ecs.ClusterArgs{
		// Container Insights adds per-service and per-task CPU, memory and
		// task-count metrics, which on-call needs to tell a sick task from a
		// sick region.
		Settings: ecs.ClusterSettingArray{
			&ecs.ClusterSettingArgs{
				Name:  pulumi.String("containerInsights"),
				Value: pulumi.String("enabled"),
			},
		},
	}, pulumi.Parent(c), pulumi.Provider(args.Provider))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: ecs cluster: %w", name, err)
	}
	c.Arn = ecsCluster.Arn
	c.Name = ecsCluster.Name
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"arn":  c.Arn,
		"name": c.Name,
	}); err != nil {
		return nil, err
	}
	return c, nil
}
