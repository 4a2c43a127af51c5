// Package awsenv describes the AWS account and partition a stack deploys
// into, and builds the names AWS derives from them (ARNs, service
// principals, endpoint service names), so that no component spells a
// partition or an account id by hand.
package awsenv

import (
	"fmt"
	"regexp"
	"strings"
)

// Account is the account and partition of the deploying credentials, as
// aws.GetCallerIdentity and aws.GetPartition report them.
type Account struct {
	ID        string
	Partition string
	// DNSSuffix is the partition's domain ("amazonaws.com").
	DNSSuffix string
	// ReverseDNSPrefix prefixes VPC endpoint service names ("com.amazonaws").
	ReverseDNSPrefix string
}

var accountID = regexp.MustCompile(`^[0-9]{12}$`)

// Validate checks that the account was filled in.
func (a Account) Validate() error {
	switch {
	case !accountID.MatchString(a.ID):
		return fmt.Errorf("account id %q is not 12 digits", a.ID)
	case a.Partition == "" || a.DNSSuffix == "" || a.ReverseDNSPrefix == "":
		return fmt.Errorf("partition of account %s is incomplete (%+v)", a.ID, a)
	}
	return nil
}

// ARN builds an ARN of this account: service, region ("" for global
// services such as IAM) and the resource part.
func (a Account) ARN(service, region, resource string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", a.Partition, service, region, a.ID, resource)
}

// GlobalARN builds an ARN that has neither region nor account, such as a
// Route 53 hosted zone's.
func (a Account) GlobalARN(service, resource string) string {
	return fmt.Sprintf("arn:%s:%s:::%s", a.Partition, service, resource)
}

// Root is the ARN of the account itself as an IAM principal.
func (a Account) Root() string { return a.ARN("iam", "", "root") }

// ServicePrincipal is the IAM principal of an AWS service ("ecs-tasks").
func (a Account) ServicePrincipal(service string) string {
	return service + "." + a.DNSSuffix
}

// RegionalServicePrincipal is the principal of a service that is named
// per region, such as CloudWatch Logs ("logs.us-east-1.amazonaws.com").
func (a Account) RegionalServicePrincipal(service, region string) string {
	return service + "." + region + "." + a.DNSSuffix
}

// EndpointService is the VPC endpoint service name of an AWS service in a
// region ("com.amazonaws.us-east-1.ecr.api").
func (a Account) EndpointService(region, service string) string {
	return strings.Join([]string{a.ReverseDNSPrefix, region, service}, ".")
}

// ManagedPolicy is the ARN of an AWS managed IAM policy ("service-role/X").
func (a Account) ManagedPolicy(name string) string {
	return fmt.Sprintf("arn:%s:iam::aws:policy/%s", a.Partition, name)
}

// SwapRegion returns arn with its region field replaced; AWS gives a
// replica (a Secrets Manager replica secret, a DynamoDB global table
// replica) the ARN of its source in its own region.
func SwapRegion(arn, region string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[3] == "" {
		return "", fmt.Errorf("%q is not a regional ARN", arn)
	}
	parts[3] = region
	return strings.Join(parts, ":"), nil
}
