// Package secrets declares each service's runtime secret in Secrets
// Manager: one secret per service in the primary region, replicated to the
// secondary, each copy encrypted with its own region's data key. The
// secret holds the connection strings the service reads from its
// environment (DATABASE_URL, DATABASE_READ_URL, REDIS_URL) as JSON keys;
// ECS injects them at task start, so they never appear in a task
// definition or in Pulumi's state.
//
// Pulumi declares the secrets but never writes their values: the values
// carry the services' own database passwords, which are created inside
// PostgreSQL after the database exists (see docs/infra.md).
package secrets

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:ServiceSecrets"

// Region is where a copy of the secrets lives and the key that encrypts it.
type Region struct {
	Name       string
	DataKeyArn pulumi.StringInput
}

// Args configures the services' secrets.
type Args struct {
	// Provider is the primary region's provider; replicas are declared as
	// part of each secret.
	Provider    *aws.Provider
	Environment string
	Primary     Region
	// Replicas are the other regions.
	Replicas []Region
	// Services names the services that get a secret.
	Services []string
	// Protect keeps the secrets through `pulumi destroy`.
	Protect bool
}

// Secrets are the services' runtime secrets.
type Secrets struct {
	pulumi.ResourceState

	// Arns maps a service to its secret's ARN in each region.
	Arns map[string]map[string]pulumi.StringOutput
}

// Name is a service's secret name.
func Name(environment, service string) string {
	return "tandem/" + environment + "/" + service
}

// Keys of a runtime secret, named after the environment variables they
// become.
const (
	DatabaseURL     = "DATABASE_URL"
	DatabaseReadURL = "DATABASE_READ_URL"
	RedisURL        = "REDIS_URL"
)

// New declares the services' secrets.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Secrets, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("secrets: the primary region's provider is required")
	}
	s := &Secrets{Arns: map[string]map[string]pulumi.StringOutput{}}
	if err := ctx.RegisterComponentResource(TypeToken, name, s, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(s), pulumi.Provider(args.Provider), pulumi.Protect(args.Protect)}
	outputs := pulumi.Map{}
	for _, svc := range args.Services {
		var replicas secretsmanager.SecretReplicaArray
		for _, r := range args.Replicas {
			replicas = append(replicas, &secretsmanager.SecretReplicaArgs{
				Region:   pulumi.String(r.Name),
				KmsKeyId: r.DataKeyArn,
			})
		}
		recovery := 7
		if args.Protect {
			recovery = 30
		}
		secret, err := secretsmanager.NewSecret(ctx, name+"-"+svc, &secretsmanager.SecretArgs{
			Name:                 pulumi.String(Name(args.Environment, svc)),
			Description:          pulumi.String("Connection strings of " + svc + " (" + DatabaseURL + ", " + DatabaseReadURL + ", " + RedisURL + ")"),
			KmsKeyId:             args.Primary.DataKeyArn,
			Replicas:             replicas,
			RecoveryWindowInDays: pulumi.Int(recovery),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("secrets %s: secret of %s: %w", name, svc, err)
		}
		byRegion := map[string]pulumi.StringOutput{args.Primary.Name: secret.Arn}
		for _, r := range args.Replicas {
			region := r.Name
			byRegion[region] = secret.Arn.ApplyT(func(arn string) (string, error) {
				return awsenv.SwapRegion(arn, region)
			}).(pulumi.StringOutput)
		}
		s.Arns[svc] = byRegion
		outputs[svc] = secret.Arn
	}
	if err := ctx.RegisterResourceOutputs(s, outputs); err != nil {
		return nil, err
	}
	return s, nil
}
