package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/tandemhq/tandem/infra/network"
	"github.com/tandemhq/tandem/stacks"
)

// AuthTokenKey is the Pulumi config key of the cache's AUTH token. It is
// kept out of the typed spec because the spec is plain text shared with
// the local platform; Pulumi stores it encrypted in the stack file.
const AuthTokenKey = "tandem:cacheAuthToken"

// inputs are everything the program reads, checked before any resource
// is declared.
type inputs struct {
	spec *stacks.Spec
	// regions lists the spec's regions, primary first.
	regions []regionPlan
	// authToken is the cache's AUTH token, a secret output.
	authToken pulumi.StringOutput
}

// regionPlan is a region with its checked address plan.
type regionPlan struct {
	stacks.Region
	// index is the region's position in the spec, for error messages.
	index  int
	layout network.Layout
}

func (r regionPlan) primary() bool { return r.Role == stacks.RolePrimary }

// readInputs reads and checks the spec, the address plans and the secret
// config. Everything that can be wrong with them is found here, so a bad
// stack fails `pulumi preview` without declaring anything.
func readInputs(ctx *pulumi.Context) (*inputs, error) {
	spec, err := readSpec(ctx)
	if err != nil {
		return nil, err
	}
	if err := spec.ValidateAWS(); err != nil {
		return nil, err
	}
	in := &inputs{spec: spec}
	for i, r := range spec.Regions {
		cidr := r.VPCCIDR
		if cidr == "" {
			cidr = stacks.DefaultVPCCIDR
		}
		layout, err := network.PlanLayout(cidr, spec.Network.AZCount)
		if err != nil {
			return nil, fmt.Errorf("invalid platform spec: regions[%d].vpcCidr: %w", i, err)
		}
		plan := regionPlan{Region: r, index: i, layout: layout}
		if plan.primary() {
			in.regions = append([]regionPlan{plan}, in.regions...)
		} else {
			in.regions = append(in.regions, plan)
		}
	}
	token, err := readAuthToken(ctx)
	if err != nil {
		return nil, err
	}
	in.authToken = pulumi.ToSecret(pulumi.String(token)).(pulumi.StringOutput)
	return in, nil
}

// readSpec decodes and validates the stack's platform spec with the same
// code the local platform uses, so both targets accept the same files.
func readSpec(ctx *pulumi.Context) (*stacks.Spec, error) {
	raw := config.Get(ctx, stacks.ConfigKey)
	if raw == "" {
		return nil, errors.New(stacks.ConfigKey + ": missing from the stack's config; add the platform spec under config: in stacks/Pulumi." + ctx.Stack() + ".yaml (see stacks/Pulumi.local.yaml)")
	}
	return stacks.Decode([]byte(raw))
}

// readAuthToken reads the cache's AUTH token and checks it against
// ElastiCache's rules, so a bad token fails the preview rather than the
// cache's creation half-way through `pulumi up`.
func readAuthToken(ctx *pulumi.Context) (string, error) {
	const fix = "run: pulumi config set --secret " + AuthTokenKey + " \"$(openssl rand -hex 32)\""
	token, ok := ctx.GetConfig(AuthTokenKey)
	switch {
	case !ok || token == "":
		return "", fmt.Errorf("%s: missing; the cache requires an AUTH token; %s", AuthTokenKey, fix)
	case !ctx.IsConfigSecret(AuthTokenKey):
		return "", fmt.Errorf("%s: stored in plain text in the stack file; store it encrypted instead; %s", AuthTokenKey, fix)
	case len(token) < 16 || len(token) > 128:
		return "", fmt.Errorf("%s: %d characters; ElastiCache accepts 16 to 128; %s", AuthTokenKey, len(token), fix)
	}
	for _, c := range token {
		if c < '!' || c > '~' || strings.ContainsRune(`"/@`, c) {
			return "", fmt.Errorf("%s: contains %q; ElastiCache accepts printable ASCII other than space, \", / and @; %s", AuthTokenKey, c, fix)
		}
	}
	return token, nil
}
