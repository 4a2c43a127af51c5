// Package keys declares the customer-managed KMS keys of one tandem region:
// a data key for the database, the cache, the operator's state table and
// the services' secrets, and a telemetry key for logs and alarm topics.
// Keys are regional, so every region has its own pair and every replica
// (database, cache, state table, secret) is encrypted with the key of the
// region it lives in.
package keys

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Keys"

// Args configures the keys of a region.
type Args struct {
	Provider    *aws.Provider
	Account     awsenv.Account
	Region      string
	Environment string
	// Protect marks the keys protected, so `pulumi destroy` refuses to
	// schedule their deletion: data encrypted under a deleted key is lost.
	Protect bool
}

// Keys are the region's customer-managed keys.
type Keys struct {
	pulumi.ResourceState

	// DataKeyArn encrypts the database, its Performance Insights, the
	// cache, the state table and the services' secrets.
	DataKeyArn pulumi.StringOutput
	// TelemetryKeyArn encrypts log groups and alarm topics.
	TelemetryKeyArn pulumi.StringOutput
}

// accountActions is what the account's own principals may do with a key,
// through their IAM policies: administer it and use it. They are listed
// in full rather than as "kms:*" so that no statement grants a wildcard.
var accountActions = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias",
	"kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
	"kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy",
	"kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies",
	"kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant",
	"kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
	"kms:UpdateAlias", "kms:UpdateKeyDescription",
}

// New declares the keys of a region.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Keys, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("keys: a region provider is required")
	}
	k := &Keys{}
	if err := ctx.RegisterComponentResource(TypeToken, name, k, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(k), pulumi.Provider(args.Provider), pulumi.Protect(args.Protect)}
	acct := args.Account

	account := policy.Statement{
		Sid:        "AccountPrincipalsThroughIAM",
		Principals: []policy.Principal{{Type: policy.AWS, Identifiers: policy.Strings(acct.Root())}},
		Actions:    accountActions,
		Resources:  policy.Strings(policy.AnyResource),
	}
	dataPolicy, err := policy.Document(account)
	if err != nil {
		return nil, fmt.Errorf("keys %s: data key policy: %w", name, err)
	}
	telemetryPolicy, err := policy.Document(account,
		policy.Statement{
			// CloudWatch Logs encrypts a log group's events itself; the
			// condition limits it to this account's log groups in the region.
			Sid:        "CloudWatchLogs",
			Principals: []policy.Principal{{Type: policy.Service, Identifiers: policy.Strings(acct.RegionalServicePrincipal("logs", args.Region))}},
			Actions: []string{
				"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
				"kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey",
			},
			Resources: policy.Strings(policy.AnyResource),
			Conditions: []policy.Condition{{
				Test:     "ArnLike",
				Variable: "kms:EncryptionContext:aws:logs:arn",
				Values:   policy.Strings(acct.ARN("logs", args.Region, "log-group:*")),
			}},
		},
		policy.Statement{
			// Alarms publish to the encrypted alarm topic as CloudWatch.
			Sid:        "CloudWatchAlarmsToTopic",
			Principals: []policy.Principal{{Type: policy.Service, Identifiers: policy.Strings(acct.ServicePrincipal("cloudwatch"))}},
			Actions:    []string{"kms:Decrypt", "kms:GenerateDataKey"},
			Resources:  policy.Strings(policy.AnyResource),
			Conditions: []policy.Condition{{Test: "StringEquals", Variable: "aws:SourceAccount", Values: policy.Strings(acct.ID)}},
		},
	)
	if err != nil {
		return nil, fmt.Errorf("keys %s: telemetry key policy: %w", name, err)
	}

	data, err := newKey(ctx, name+"-data", "tandem "+args.Environment+" data in "+args.Region, dataPolicy, child)
	if err != nil {
		return nil, fmt.Errorf("keys %s: %w", name, err)
	}
	telemetry, err := newKey(ctx, name+"-telemetry", "tandem "+args.Environment+" logs and alarms in "+args.Region, telemetryPolicy, child)
	if err != nil {
		return nil, fmt.Errorf("keys %s: %w", name, err)
	}
	k.DataKeyArn = data.Arn
	k.TelemetryKeyArn = telemetry.Arn
	if err := ctx.RegisterResourceOutputs(k, pulumi.Map{
		"dataKeyArn":      k.DataKeyArn,
		"telemetryKeyArn": k.TelemetryKeyArn,
	}); err != nil {
		return nil, err
	}
	return k, nil
}

func newKey(ctx *pulumi.Context, name, description string, keyPolicy pulumi.StringOutput, opts []pulumi.ResourceOption) (*kms.Key, error) {
	key, err := kms.NewKey(ctx, name, &kms.KeyArgs{
		Description:       pulumi.String(description),
		EnableKeyRotation: pulumi.Bool(true),
		// The longest window: a key scheduled for deletion by mistake can
		// be recovered for 30 days.
		DeletionWindowInDays: pulumi.Int(30),
		Policy:               keyPolicy,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	if _, err := kms.NewAlias(ctx, name, &kms.AliasArgs{
		Name:        pulumi.String("alias/tandem-" + name),
		TargetKeyId: key.KeyId,
	}, opts...); err != nil {
		return nil, fmt.Errorf("alias of key %s: %w", name, err)
	}
	return key, nil
}
