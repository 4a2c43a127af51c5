// Package cluster declares where the services of one tandem region run and
// how traffic reaches them: the ECS cluster, the internet-facing load
// balancer (HTTPS only, HTTP redirected), its access logs, and per service
// a blue and a green ECS service behind target groups that one listener
// rule weighs (see Service).
//
// The operator owns what a deploy or a failover changes: listener rule
// weights, the task definition and desired count of each ECS service, and
// the autoscaling bounds. Those fields are declared once and then ignored
// (pulumi.IgnoreChanges), so `pulumi up` never undoes a deploy.
package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Cluster"

// TLSPolicy is the HTTPS listener's security policy: TLS 1.3 and 1.2 with
// forward-secret ciphers only.
const TLSPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// Args configures a Cluster.
type Args struct {
	// Provider is the AWS provider of the region; every child uses it.
	Provider    *aws.Provider
	Account     awsenv.Account
	Region      string
	Environment string
	// Active says the region serves traffic: its blue fleets start at
	// their count. A standby region's fleets are declared at zero (pilot
	// light) and the operator activates them on failover.
	Active           bool
	VpcID            pulumi.StringInput
	VpcCIDR          string
	PublicSubnetIDs  pulumi.StringArrayInput
	PrivateSubnetIDs pulumi.StringArrayInput
	// CertificateArn is the region's ACM certificate for the HTTPS listener.
	CertificateArn string
	// DeletionProtection protects the load balancer from deletion.
	DeletionProtection bool
	// AccessLogs keeps the load balancer's access logs in an S3 bucket of
	// the region.
	AccessLogs bool
	// TelemetryKeyArn encrypts the services' log groups.
	TelemetryKeyArn pulumi.StringInput
	// DataKeyArn encrypts the services' secrets; task execution roles may
	// decrypt with it through Secrets Manager only.
	DataKeyArn       pulumi.StringInput
	LogRetentionDays int
	// ReadinessPath is the path Route 53 checks on the load balancer, with
	// ?service=<name> choosing the service (see Service).
	ReadinessPath string
	// DrainTimeout is how long a target group lets in-flight requests end
	// before a deregistered task is stopped.
	DrainTimeout time.Duration
	// BaseURL is the region's own HTTPS name; a service reaches the
	// services it depends on through it, so their blue/green weights apply.
	BaseURL  string
	Services []ServiceSpec
}

// Cluster is the ECS cluster and load balancer of one region.
type Cluster struct {
	pulumi.ResourceState

	// Name is the ECS cluster's name, known before deployment.
	Name string
	Arn  pulumi.StringOutput
	// LoadBalancer is the region's internet-facing load balancer.
	LoadBalancerArn       pulumi.StringOutput
	LoadBalancerArnSuffix pulumi.StringOutput
	DNSName               pulumi.StringOutput
	ZoneID                pulumi.StringOutput
	HTTPSListenerArn      pulumi.StringOutput
	// ServiceSecurityGroupID is the tasks' group; the database and cache
	// accept connections from it only.
	ServiceSecurityGroupID pulumi.IDOutput
	Services               []*Service
}

// ClusterName is the ECS cluster name of an environment. It is fixed so
// that the operator finds the cluster, and the services in it, by name.
func ClusterName(environment string) string { return awsenv.Fit("tandem-"+environment, 255) }

// New declares the cluster of a region.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if err := args.check(); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	c := &Cluster{Name: ClusterName(args.Environment)}
	if err := ctx.RegisterComponentResource(TypeToken, name, c, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(c), pulumi.Provider(args.Provider)}

	ecsCluster, err := ecs.NewCluster(ctx, name, &ecs.ClusterArgs{
		Name: pulumi.String(c.Name),
		// Container Insights adds per-service and per-task CPU, memory and
		// task-count metrics, which on-call needs to tell a sick task from a
		// sick region.
		Settings: ecs.ClusterSettingArray{
			&ecs.ClusterSettingArgs{
				Name:  pulumi.String("containerInsights"),
				Value: pulumi.String("enabled"),
			},
		},
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: ecs cluster: %w", name, err)
	}

	albSG, taskSG, err := newSecurityGroups(ctx, name, args, child)
	if err != nil {
		return nil, err
	}
	alb, err := newLoadBalancer(ctx, name, args, albSG, child)
	if err != nil {
		return nil, err
	}
	https, err := lb.NewListener(ctx, name+"-https", &lb.ListenerArgs{
		LoadBalancerArn: alb.Arn,
		Port:            pulumi.Int(443),
		Protocol:        pulumi.String("HTTPS"),
		SslPolicy:       pulumi.String(TLSPolicy),
		CertificateArn:  pulumi.String(args.CertificateArn),
		// A path no service claims is answered by the load balancer.
		DefaultActions: lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
			Type: pulumi.String("fixed-response"),
			FixedResponse: &lb.ListenerDefaultActionFixedResponseArgs{
				ContentType: pulumi.String("application/json"),
				MessageBody: pulumi.String(`{"title":"not found","status":404}`),
				StatusCode:  pulumi.String("404"),
			},
		}},
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: https listener: %w", name, err)
	}
	if _, err := lb.NewListener(ctx, name+"-http", &lb.ListenerArgs{
		LoadBalancerArn: alb.Arn,
		Port:            pulumi.Int(80),
		Protocol:        pulumi.String("HTTP"),
		DefaultActions: lb.ListenerDefaultActionArray{&lb.ListenerDefaultActionArgs{
			Type: pulumi.String("redirect"),
			Redirect: &lb.ListenerDefaultActionRedirectArgs{
				Protocol:   pulumi.String("HTTPS"),
				Port:       pulumi.String("443"),
				StatusCode: pulumi.String("HTTP_301"),
			},
		}},
	}, child...); err != nil {
		return nil, fmt.Errorf("cluster %s: http listener: %w", name, err)
	}

	for i, spec := range args.Services {
		svc, err := newService(ctx, name+"-"+spec.Name, &serviceArgs{
			cluster:     args,
			spec:        spec,
			index:       i,
			clusterArn:  ecsCluster.Arn,
			clusterName: c.Name,
			listenerArn: https.Arn,
			taskSG:      taskSG.ID(),
		}, pulumi.Parent(c))
		if err != nil {
			return nil, err
		}
		c.Services = append(c.Services, svc)
	}

	c.Arn = ecsCluster.Arn
	c.LoadBalancerArn = alb.Arn
	c.LoadBalancerArnSuffix = alb.ArnSuffix
	c.DNSName = alb.DnsName
	c.ZoneID = alb.ZoneId
	c.HTTPSListenerArn = https.Arn
	c.ServiceSecurityGroupID = taskSG.ID()
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"arn":              c.Arn,
		"name":             pulumi.String(c.Name),
		"loadBalancerArn":  c.LoadBalancerArn,
		"dnsName":          c.DNSName,
		"httpsListenerArn": c.HTTPSListenerArn,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (a *Args) check() error {
	switch {
	case a == nil || a.Provider == nil:
		return errors.New("a region provider is required")
	case a.CertificateArn == "":
		return errors.New("a certificate is required for the HTTPS listener")
	case a.TelemetryKeyArn == nil || a.DataKeyArn == nil:
		return errors.New("the region's keys are required")
	case len(a.Services) == 0:
		return errors.New("no services")
	}
	for _, s := range a.Services {
		if s.SecretArn == nil {
			return fmt.Errorf("service %s has no secret", s.Name)
		}
	}
	return nil
}

// newSecurityGroups declares the load balancer's group (HTTP and HTTPS
// from anywhere, out only to the tasks' ports) and the tasks' group (in
// only from the load balancer; out to HTTPS, PostgreSQL and Redis). Rules
// are separate resources because each group refers to the other.
func newSecurityGroups(ctx *pulumi.Context, name string, args *Args, opts []pulumi.ResourceOption) (alb, tasks *ec2.SecurityGroup, err error) {
	alb, err = ec2.NewSecurityGroup(ctx, name+"-alb", &ec2.SecurityGroupArgs{
		VpcId:       args.VpcID,
		Description: pulumi.String("tandem load balancer: HTTPS and redirected HTTP from clients"),
		Tags:        pulumi.StringMap{"Name": pulumi.String(name + "-alb")},
	}, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: load balancer security group: %w", name, err)
	}
	tasks, err = ec2.NewSecurityGroup(ctx, name+"-tasks", &ec2.SecurityGroupArgs{
		VpcId:       args.VpcID,
		Description: pulumi.String("tandem service tasks: from the load balancer only"),
		Tags:        pulumi.StringMap{"Name": pulumi.String(name + "-tasks")},
	}, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: task security group: %w", name, err)
	}
	type rule struct {
		name, kind, desc string
		group            *ec2.SecurityGroup
		port             int
		cidr             string
		peer             *ec2.SecurityGroup
	}
	rules := []rule{
		{"alb-https", "ingress", "HTTPS from clients", alb, 443, "0.0.0.0/0", nil},
		{"alb-http", "ingress", "HTTP from clients, redirected to HTTPS", alb, 80, "0.0.0.0/0", nil},
		{"tasks-https", "egress", "HTTPS to AWS endpoints, image registries and the region's load balancer", tasks, 443, "0.0.0.0/0", nil},
		{"tasks-postgres", "egress", "PostgreSQL in the VPC", tasks, 5432, args.VpcCIDR, nil},
		{"tasks-redis", "egress", "Redis in the VPC", tasks, 6379, args.VpcCIDR, nil},
	}
	seen := map[int]bool{}
	for _, s := range args.Services {
		if seen[s.Port] {
			continue
		}
		seen[s.Port] = true
		rules = append(rules,
			rule{fmt.Sprintf("alb-to-tasks-%d", s.Port), "egress", "to the tasks", alb, s.Port, "", tasks},
			rule{fmt.Sprintf("tasks-from-alb-%d", s.Port), "ingress", "from the load balancer", tasks, s.Port, "", alb},
		)
	}
	for _, r := range rules {
		ra := &ec2.SecurityGroupRuleArgs{
			Type:            pulumi.String(r.kind),
			Description:     pulumi.String(r.desc),
			SecurityGroupId: r.group.ID(),
			Protocol:        pulumi.String("tcp"),
			FromPort:        pulumi.Int(r.port),
			ToPort:          pulumi.Int(r.port),
		}
		if r.peer != nil {
			ra.SourceSecurityGroupId = r.peer.ID()
		} else {
			ra.CidrBlocks = pulumi.StringArray{pulumi.String(r.cidr)}
		}
		if _, err := ec2.NewSecurityGroupRule(ctx, name+"-"+r.name, ra, opts...); err != nil {
			return nil, nil, fmt.Errorf("cluster %s: security group rule %s: %w", name, r.name, err)
		}
	}
	return alb, tasks, nil
}

// newLoadBalancer declares the internet-facing load balancer and, when
// access logs are kept, their bucket.
func newLoadBalancer(ctx *pulumi.Context, name string, args *Args, sg *ec2.SecurityGroup, opts []pulumi.ResourceOption) (*lb.LoadBalancer, error) {
	lbArgs := &lb.LoadBalancerArgs{
		// Load balancer names are limited to 32 bytes and regional.
		Name:             pulumi.String(awsenv.Fit("tandem-"+args.Environment, 32)),
		LoadBalancerType: pulumi.String("application"),
		Internal:         pulumi.Bool(false),
		SecurityGroups:   pulumi.StringArray{sg.ID()},
		Subnets:          args.PublicSubnetIDs,
		// Requests with header names that are not valid HTTP are dropped
		// at the edge instead of reaching the services (request smuggling).
		DropInvalidHeaderFields:  pulumi.Bool(true),
		EnableDeletionProtection: pulumi.Bool(args.DeletionProtection),
		EnableHttp2:              pulumi.Bool(true),
		IdleTimeout:              pulumi.Int(60),
		Tags:                     pulumi.StringMap{"Name": pulumi.String(name)},
	}
	lbOpts := opts
	if args.AccessLogs {
		bucket, policy, err := newAccessLogBucket(ctx, name, args, opts)
		if err != nil {
			return nil, err
		}
		lbArgs.AccessLogs = &lb.LoadBalancerAccessLogsArgs{
			Bucket:  bucket.Bucket,
			Prefix:  pulumi.String(accessLogPrefix),
			Enabled: pulumi.Bool(true),
		}
		// The load balancer checks that it may write to the bucket when
		// logging is turned on.
		lbOpts = append(append([]pulumi.ResourceOption{}, opts...), pulumi.DependsOn([]pulumi.Resource{policy}))
	}
	alb, err := lb.NewLoadBalancer(ctx, name, lbArgs, lbOpts...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: load balancer: %w", name, err)
	}
	return alb, nil
}

const accessLogPrefix = "alb"

// newAccessLogBucket declares the bucket of the load balancer's access
// logs: private, owner-enforced, encrypted (load balancers write with
// SSE-S3 only), TLS-only, and expiring after the log retention.
func newAccessLogBucket(ctx *pulumi.Context, name string, args *Args, opts []pulumi.ResourceOption) (*s3.BucketV2, *s3.BucketPolicy, error) {
	bucket, err := s3.NewBucketV2(ctx, name+"-alb-logs", &s3.BucketV2Args{
		Tags: pulumi.StringMap{"Name": pulumi.String(name + "-alb-logs")},
	}, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket: %w", name, err)
	}
	if _, err := s3.NewBucketPublicAccessBlock(ctx, name+"-alb-logs", &s3.BucketPublicAccessBlockArgs{
		Bucket:                bucket.ID(),
		BlockPublicAcls:       pulumi.Bool(true),
		BlockPublicPolicy:     pulumi.Bool(true),
		IgnorePublicAcls:      pulumi.Bool(true),
		RestrictPublicBuckets: pulumi.Bool(true),
	}, opts...); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket public access block: %w", name, err)
	}
	if _, err := s3.NewBucketOwnershipControls(ctx, name+"-alb-logs", &s3.BucketOwnershipControlsArgs{
		Bucket: bucket.ID(),
		Rule:   &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}, opts...); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket ownership: %w", name, err)
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-alb-logs", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{&s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("AES256"),
			},
		}},
	}, opts...); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket encryption: %w", name, err)
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, name+"-alb-logs", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{&s3.BucketLifecycleConfigurationV2RuleArgs{
			Id:         pulumi.String("expire-access-logs"),
			Status:     pulumi.String("Enabled"),
			Filter:     &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String(accessLogPrefix + "/")},
			Expiration: &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(args.LogRetentionDays)},
		}},
	}, opts...); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket lifecycle: %w", name, err)
	}

	// Regions that predate August 2022 deliver logs as the region's
	// Elastic Load Balancing account; newer ones as the log delivery
	// service. Both are allowed, and only under this account's prefix.
	elbAccount, err := elb.GetServiceAccount(ctx, &elb.GetServiceAccountArgs{}, pulumi.Provider(args.Provider))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: load balancing account of %s: %w", name, args.Region, err)
	}
	logObjects := pulumi.Sprintf("%s/%s/AWSLogs/%s/*", bucket.Arn, accessLogPrefix, args.Account.ID)
	doc, err := policy.Document(
		policy.Statement{
			Sid:        "LoadBalancerWritesLogs",
			Principals: []policy.Principal{{Type: policy.AWS, Identifiers: policy.Strings(elbAccount.Arn)}},
			Actions:    []string{"s3:PutObject"},
			Resources:  policy.Inputs(logObjects),
		},
		policy.Statement{
			Sid:        "LogDeliveryWritesLogs",
			Principals: []policy.Principal{{Type: policy.Service, Identifiers: policy.Strings(args.Account.ServicePrincipal("logdelivery.elasticloadbalancing"))}},
			Actions:    []string{"s3:PutObject"},
			Resources:  policy.Inputs(logObjects),
		},
		policy.Statement{
			Sid:        "TLSOnly",
			Effect:     "Deny",
			Principals: []policy.Principal{{Type: policy.AWS, Identifiers: policy.Strings("*")}},
			Actions:    []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"},
			Resources:  policy.Inputs(bucket.Arn, pulumi.Sprintf("%s/*", bucket.Arn)),
			Conditions: []policy.Condition{{Test: "Bool", Variable: "aws:SecureTransport", Values: policy.Strings("false")}},
		},
	)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket policy: %w", name, err)
	}
	bp, err := s3.NewBucketPolicy(ctx, name+"-alb-logs", &s3.BucketPolicyArgs{
		Bucket: bucket.ID(),
		Policy: doc,
	}, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: access log bucket policy: %w", name, err)
	}
	return bucket, bp, nil
}
