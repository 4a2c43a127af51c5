package cluster

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/appautoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
	"github.com/tandemhq/tandem/infra/secrets"
)

// ServiceTypeToken is the Service component's Pulumi type.
const ServiceTypeToken = "tandem:infra:Service"

// Colors of a blue/green pair, in declaration order.
var Colors = []string{"blue", "green"}

// Operator-owned fields, by resource. `pulumi up` declares them once and
// then leaves them to the operator.
var (
	// RuleOwned: a rule's forward action carries the blue/green weights.
	RuleOwned = []string{"actions"}
	// ServiceOwned: a deploy registers new task definitions and scales
	// colors up and down.
	ServiceOwned = []string{"taskDefinition", "desiredCount"}
	// ScalingOwned: promoting a color raises its floor and retiring one
	// lowers it to zero, or autoscaling would undo the scale-down.
	ScalingOwned = []string{"minCapacity", "maxCapacity"}
)

// TaskUser is the user and group the containers run as: not root, and not
// any user an image is likely to define with privileges.
const TaskUser = "10001:10001"

// TestHeader pins a request to one color, whatever the weights; a deploy
// sends test traffic to the new color with it before shifting weight.
const TestHeader = "X-Tandem-Color"

// TargetGroupName is the name of a color's target group. Names are
// regional, so both regions use the same.
func TargetGroupName(environment, service, color string) string {
	return awsenv.Fit(environment+"-"+service+"-"+color, 32)
}

// ServiceSpec is one service as a region runs it.
type ServiceSpec struct {
	Name       string
	Image      string
	Port       int
	CPU        int
	MemoryMiB  int
	Count      int
	MaxCount   int
	HealthPath string
	PathPrefix string
	Database   bool
	Cache      bool
	DependsOn  []string
	// SecretArn is the region's copy of the service's runtime secret.
	SecretArn pulumi.StringInput
}

// Service is one service of a region: a task definition, and per color a
// target group and an ECS service with its autoscaling, behind listener
// rules that weigh the colors.
type Service struct {
	pulumi.ResourceState

	Name string
	// ECSServiceNames maps a color to its ECS service's name, known before
	// deployment ("claims-blue").
	ECSServiceNames map[string]string
	// TargetGroupArns and TargetGroupArnSuffixes map a color to its target
	// group; alarms use the suffixes as metric dimensions.
	TargetGroupArns        map[string]pulumi.StringOutput
	TargetGroupArnSuffixes map[string]pulumi.StringOutput
	// RuleArns are the rules whose weights the operator sets: the
	// service's path rule and its readiness rule.
	RuleArns []pulumi.StringOutput
	// ScalableTargetArns are the colors' autoscaling targets.
	ScalableTargetArns []pulumi.StringOutput
	// ExecutionRoleArn is the role ECS starts the tasks with; a task
	// definition the operator registers passes it on.
	ExecutionRoleArn pulumi.StringOutput
	// TaskFamily is the task definition family.
	TaskFamily string
}

type serviceArgs struct {
	cluster     *Args
	spec        ServiceSpec
	index       int
	clusterArn  pulumi.StringOutput
	clusterName string
	listenerArn pulumi.StringOutput
	taskSG      pulumi.IDOutput
}

// Listener rule priorities: each service has a block of ten, so a service
// added later never renumbers another's rules. Within a block the header
// rules come first, as they are the most specific.
const (
	priorityBase      = 100
	priorityHeader    = 1 // +0 blue, +1 green
	priorityReadiness = 3
	priorityPath      = 5
)

func newService(ctx *pulumi.Context, name string, a *serviceArgs, opts ...pulumi.ResourceOption) (*Service, error) {
	spec, args := a.spec, a.cluster
	s := &Service{
		Name:                   spec.Name,
		ECSServiceNames:        map[string]string{},
		TargetGroupArns:        map[string]pulumi.StringOutput{},
		TargetGroupArnSuffixes: map[string]pulumi.StringOutput{},
		TaskFamily:             "tandem-" + args.Environment + "-" + spec.Name,
	}
	if err := ctx.RegisterComponentResource(ServiceTypeToken, name, s, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(s), pulumi.Provider(args.Provider)}

	logs, err := cloudwatch.NewLogGroup(ctx, name, &cloudwatch.LogGroupArgs{
		Name:            pulumi.String("/tandem/" + args.Environment + "/" + spec.Name),
		KmsKeyId:        args.TelemetryKeyArn,
		RetentionInDays: pulumi.Int(args.LogRetentionDays),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("service %s: log group: %w", name, err)
	}
	execRole, err := newExecutionRole(ctx, name, args, spec, logs, child)
	if err != nil {
		return nil, err
	}
	s.ExecutionRoleArn = execRole.Arn

	containers := pulumi.All(spec.SecretArn, logs.Name).ApplyT(func(v []any) (string, error) {
		return ContainerDefinitions(args.Region, args.BaseURL, spec, v[0].(string), v[1].(string))
	}).(pulumi.StringOutput)
	task, err := ecs.NewTaskDefinition(ctx, name, &ecs.TaskDefinitionArgs{
		Family:                  pulumi.String(s.TaskFamily),
		Cpu:                     pulumi.String(strconv.Itoa(spec.CPU)),
		Memory:                  pulumi.String(strconv.Itoa(spec.MemoryMiB)),
		NetworkMode:             pulumi.String("awsvpc"),
		RequiresCompatibilities: pulumi.StringArray{pulumi.String("FARGATE")},
		ExecutionRoleArn:        execRole.Arn,
		RuntimePlatform: &ecs.TaskDefinitionRuntimePlatformArgs{
			OperatingSystemFamily: pulumi.String("LINUX"),
			CpuArchitecture:       pulumi.String("X86_64"),
		},
		// The root filesystem is read-only; /tmp is the task's scratch
		// space on its ephemeral storage.
		Volumes:              ecs.TaskDefinitionVolumeArray{&ecs.TaskDefinitionVolumeArgs{Name: pulumi.String("tmp")}},
		ContainerDefinitions: containers,
		// Revisions the operator registered stay registered when Pulumi
		// replaces its own.
		SkipDestroy: pulumi.Bool(true),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("service %s: task definition: %w", name, err)
	}

	for _, color := range Colors {
		tg, err := lb.NewTargetGroup(ctx, name+"-"+color, &lb.TargetGroupArgs{
			// Target group names are limited to 32 bytes, too few for a
			// generated suffix on every name; a change that would replace a
			// group fails on the name instead, which is the safe outcome: a
			// group carrying traffic is only replaced with the operator
			// moving that traffic.
			Name:                pulumi.String(TargetGroupName(args.Environment, spec.Name, color)),
			Port:                pulumi.Int(spec.Port),
			Protocol:            pulumi.String("HTTP"),
			TargetType:          pulumi.String("ip"),
			VpcId:               args.VpcID,
			DeregistrationDelay: pulumi.Int(int(args.DrainTimeout.Seconds())),
			HealthCheck: &lb.TargetGroupHealthCheckArgs{
				Path:               pulumi.String(spec.HealthPath),
				Matcher:            pulumi.String("200"),
				Interval:           pulumi.Int(10),
				Timeout:            pulumi.Int(5),
				HealthyThreshold:   pulumi.Int(2),
				UnhealthyThreshold: pulumi.Int(3),
			},
			Tags: pulumi.StringMap{"tandem:service": pulumi.String(spec.Name), "tandem:color": pulumi.String(color)},
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("service %s: %s target group: %w", name, color, err)
		}
		s.TargetGroupArns[color] = tg.Arn
		s.TargetGroupArnSuffixes[color] = tg.ArnSuffix
	}

	rules, err := newRules(ctx, name, a, s, child)
	if err != nil {
		return nil, err
	}

	for _, color := range Colors {
		if err := newFleet(ctx, name, a, s, color, task, rules, child); err != nil {
			return nil, err
		}
	}

	if err := ctx.RegisterResourceOutputs(s, pulumi.Map{
		"blueTargetGroupArn":  s.TargetGroupArns["blue"],
		"greenTargetGroupArn": s.TargetGroupArns["green"],
		"executionRoleArn":    s.ExecutionRoleArn,
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// newRules declares the service's listener rules: one header rule per
// color for test traffic, the readiness rule Route 53 checks, and the path
// rule that carries the service's traffic. The last two weigh the colors:
// blue 100, green 0 when declared, the operator's from then on.
func newRules(ctx *pulumi.Context, name string, a *serviceArgs, s *Service, opts []pulumi.ResourceOption) ([]pulumi.Resource, error) {
	spec := a.spec
	base := priorityBase + 10*a.index
	paths := pulumi.StringArray{pulumi.String(spec.PathPrefix), pulumi.String(strings.TrimSuffix(spec.PathPrefix, "/") + "/*")}
	weighted := lb.ListenerRuleActionArray{&lb.ListenerRuleActionArgs{
		Type: pulumi.String("forward"),
		Forward: &lb.ListenerRuleActionForwardArgs{
			TargetGroups: lb.ListenerRuleActionForwardTargetGroupArray{
				&lb.ListenerRuleActionForwardTargetGroupArgs{Arn: s.TargetGroupArns["blue"], Weight: pulumi.Int(100)},
				&lb.ListenerRuleActionForwardTargetGroupArgs{Arn: s.TargetGroupArns["green"], Weight: pulumi.Int(0)},
			},
		},
	}}
	var all []pulumi.Resource
	for i, color := range Colors {
		r, err := lb.NewListenerRule(ctx, name+"-test-"+color, &lb.ListenerRuleArgs{
			ListenerArn: a.listenerArn,
			Priority:    pulumi.Int(base + priorityHeader + i),
			Conditions: lb.ListenerRuleConditionArray{
				&lb.ListenerRuleConditionArgs{PathPattern: &lb.ListenerRuleConditionPathPatternArgs{Values: paths}},
				&lb.ListenerRuleConditionArgs{HttpHeader: &lb.ListenerRuleConditionHttpHeaderArgs{
					HttpHeaderName: pulumi.String(TestHeader),
					Values:         pulumi.StringArray{pulumi.String(color)},
				}},
			},
			Actions: lb.ListenerRuleActionArray{&lb.ListenerRuleActionArgs{
				Type:           pulumi.String("forward"),
				TargetGroupArn: s.TargetGroupArns[color],
			}},
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("service %s: %s test rule: %w", name, color, err)
		}
		all = append(all, r)
	}
	owned := append(append([]pulumi.ResourceOption{}, opts...), pulumi.IgnoreChanges(RuleOwned))
	readiness, err := lb.NewListenerRule(ctx, name+"-readiness", &lb.ListenerRuleArgs{
		ListenerArn: a.listenerArn,
		Priority:    pulumi.Int(base + priorityReadiness),
		Conditions: lb.ListenerRuleConditionArray{
			&lb.ListenerRuleConditionArgs{PathPattern: &lb.ListenerRuleConditionPathPatternArgs{
				Values: pulumi.StringArray{pulumi.String(a.cluster.ReadinessPath)},
			}},
			&lb.ListenerRuleConditionArgs{QueryStrings: lb.ListenerRuleConditionQueryStringArray{
				&lb.ListenerRuleConditionQueryStringArgs{Key: pulumi.String("service"), Value: pulumi.String(spec.Name)},
			}},
		},
		Actions: weighted,
	}, owned...)
	if err != nil {
		return nil, fmt.Errorf("service %s: readiness rule: %w", name, err)
	}
	path, err := lb.NewListenerRule(ctx, name, &lb.ListenerRuleArgs{
		ListenerArn: a.listenerArn,
		Priority:    pulumi.Int(base + priorityPath),
		Conditions: lb.ListenerRuleConditionArray{
			&lb.ListenerRuleConditionArgs{PathPattern: &lb.ListenerRuleConditionPathPatternArgs{Values: paths}},
		},
		Actions: weighted,
	}, owned...)
	if err != nil {
		return nil, fmt.Errorf("service %s: path rule: %w", name, err)
	}
	s.RuleArns = []pulumi.StringOutput{path.Arn, readiness.Arn}
	return append(all, readiness, path), nil
}

// newFleet declares one color's ECS service and its target-tracking
// autoscaling.
func newFleet(ctx *pulumi.Context, name string, a *serviceArgs, s *Service, color string, task *ecs.TaskDefinition, rules []pulumi.Resource, opts []pulumi.ResourceOption) error {
	spec := a.spec
	ecsName := spec.Name + "-" + color
	s.ECSServiceNames[color] = ecsName
	// Blue carries the traffic of a new stack; green waits at zero for the
	// first deploy. A standby region runs nothing until failover.
	desired := 0
	if color == Colors[0] && a.cluster.Active {
		desired = spec.Count
	}
	svc, err := ecs.NewService(ctx, name+"-"+color, &ecs.ServiceArgs{
		Name:           pulumi.String(ecsName),
		Cluster:        a.clusterArn,
		TaskDefinition: task.Arn,
		DesiredCount:   pulumi.Int(desired),
		LaunchType:     pulumi.String("FARGATE"),
		NetworkConfiguration: &ecs.ServiceNetworkConfigurationArgs{
			Subnets:        a.cluster.PrivateSubnetIDs,
			SecurityGroups: pulumi.StringArray{a.taskSG},
			AssignPublicIp: pulumi.Bool(false),
		},
		LoadBalancers: ecs.ServiceLoadBalancerArray{&ecs.ServiceLoadBalancerArgs{
			TargetGroupArn: s.TargetGroupArns[color],
			ContainerName:  pulumi.String(spec.Name),
			ContainerPort:  pulumi.Int(spec.Port),
		}},
		HealthCheckGracePeriodSeconds: pulumi.Int(60),
		// A rollout that cannot get healthy tasks stops and rolls back on
		// its own instead of replacing the running ones.
		DeploymentCircuitBreaker:        &ecs.ServiceDeploymentCircuitBreakerArgs{Enable: pulumi.Bool(true), Rollback: pulumi.Bool(true)},
		DeploymentMinimumHealthyPercent: pulumi.Int(100),
		DeploymentMaximumPercent:        pulumi.Int(200),
		EnableEcsManagedTags:            pulumi.Bool(true),
		PropagateTags:                   pulumi.String("SERVICE"),
		EnableExecuteCommand:            pulumi.Bool(false),
		Tags:                            pulumi.StringMap{"tandem:service": pulumi.String(spec.Name), "tandem:color": pulumi.String(color)},
	}, append(append([]pulumi.ResourceOption{}, opts...),
		pulumi.IgnoreChanges(ServiceOwned),
		// A target group must be attached to the load balancer before a
		// service can register tasks in it.
		pulumi.DependsOn(rules))...)
	if err != nil {
		return fmt.Errorf("service %s: %s ECS service: %w", name, color, err)
	}

	minimum := desired
	target, err := appautoscaling.NewTarget(ctx, name+"-"+color, &appautoscaling.TargetArgs{
		ServiceNamespace:  pulumi.String("ecs"),
		ScalableDimension: pulumi.String("ecs:service:DesiredCount"),
		ResourceId:        pulumi.String("service/" + a.clusterName + "/" + ecsName),
		MinCapacity:       pulumi.Int(minimum),
		MaxCapacity:       pulumi.Int(spec.MaxCount),
	}, append(append([]pulumi.ResourceOption{}, opts...),
		pulumi.IgnoreChanges(ScalingOwned),
		pulumi.DependsOn([]pulumi.Resource{svc}))...)
	if err != nil {
		return fmt.Errorf("service %s: %s scaling target: %w", name, color, err)
	}
	s.ScalableTargetArns = append(s.ScalableTargetArns, target.Arn)
	if _, err := appautoscaling.NewPolicy(ctx, name+"-"+color+"-cpu", &appautoscaling.PolicyArgs{
		PolicyType:        pulumi.String("TargetTrackingScaling"),
		ServiceNamespace:  target.ServiceNamespace,
		ScalableDimension: target.ScalableDimension,
		ResourceId:        target.ResourceId,
		TargetTrackingScalingPolicyConfiguration: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs{
			PredefinedMetricSpecification: &appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs{
				PredefinedMetricType: pulumi.String("ECSServiceAverageCPUUtilization"),
			},
			TargetValue:      pulumi.Float64(60),
			ScaleOutCooldown: pulumi.Int(60),
			ScaleInCooldown:  pulumi.Int(300),
		},
	}, opts...); err != nil {
		return fmt.Errorf("service %s: %s scaling policy: %w", name, color, err)
	}
	return nil
}

// newExecutionRole declares the role ECS uses to start the service's tasks:
// pull its image, write its log group, read its own secret. The tasks
// themselves get no role: the services call no AWS API.
func newExecutionRole(ctx *pulumi.Context, name string, args *Args, spec ServiceSpec, logs *cloudwatch.LogGroup, opts []pulumi.ResourceOption) (*iam.Role, error) {
	acct := args.Account
	trust, err := policy.AssumeRole(policy.Service, policy.Strings(acct.ServicePrincipal("ecs-tasks")),
		policy.Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: policy.Strings(acct.ID)})
	if err != nil {
		return nil, fmt.Errorf("service %s: execution role trust: %w", name, err)
	}
	role, err := iam.NewRole(ctx, name+"-execution", &iam.RoleArgs{
		Description:      pulumi.String("ECS starts " + spec.Name + " tasks in " + args.Region + " with this role"),
		AssumeRolePolicy: trust,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("service %s: execution role: %w", name, err)
	}
	doc, err := policy.Document(
		policy.Statement{
			// Registry logins are not scoped to a repository by AWS.
			Sid:       "RegistryLogin",
			Actions:   []string{"ecr:GetAuthorizationToken"},
			Resources: policy.Strings(policy.AnyResource),
		},
		policy.Statement{
			Sid:       "PullImages",
			Actions:   []string{"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"},
			Resources: policy.Strings(acct.ARN("ecr", args.Region, "repository/*")),
		},
		policy.Statement{
			Sid:       "WriteLogs",
			Actions:   []string{"logs:CreateLogStream", "logs:PutLogEvents"},
			Resources: policy.Inputs(pulumi.Sprintf("%s:log-stream:*", logs.Arn)),
		},
		policy.Statement{
			Sid:       "ReadOwnSecret",
			Actions:   []string{"secretsmanager:GetSecretValue"},
			Resources: []pulumi.StringInput{spec.SecretArn},
		},
		policy.Statement{
			Sid:       "DecryptOwnSecret",
			Actions:   []string{"kms:Decrypt"},
			Resources: []pulumi.StringInput{args.DataKeyArn},
			Conditions: []policy.Condition{{
				Test: "StringEquals", Variable: "kms:ViaService",
				Values: policy.Strings(acct.RegionalServicePrincipal("secretsmanager", args.Region)),
			}},
		},
	)
	if err != nil {
		return nil, fmt.Errorf("service %s: execution role policy: %w", name, err)
	}
	if _, err := iam.NewRolePolicy(ctx, name+"-execution", &iam.RolePolicyArgs{
		Role:   role.Name,
		Policy: doc,
	}, opts...); err != nil {
		return nil, fmt.Errorf("service %s: execution role policy: %w", name, err)
	}
	return role, nil
}

// container is the part of an ECS container definition tandem sets.
type container struct {
	Name                   string            `json:"name"`
	Image                  string            `json:"image"`
	Essential              bool              `json:"essential"`
	User                   string            `json:"user"`
	ReadonlyRootFilesystem bool              `json:"readonlyRootFilesystem"`
	PortMappings           []portMapping     `json:"portMappings"`
	Environment            []keyValue        `json:"environment"`
	Secrets                []secretRef       `json:"secrets"`
	LogConfiguration       logConfiguration  `json:"logConfiguration"`
	MountPoints            []mountPoint      `json:"mountPoints"`
	LinuxParameters        linuxParameters   `json:"linuxParameters"`
	StopTimeout            int               `json:"stopTimeout"`
	DockerLabels           map[string]string `json:"dockerLabels,omitempty"`
}

type portMapping struct {
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

type keyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type secretRef struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}

type logConfiguration struct {
	LogDriver string            `json:"logDriver"`
	Options   map[string]string `json:"options"`
}

type mountPoint struct {
	SourceVolume  string `json:"sourceVolume"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly"`
}

type linuxParameters struct {
	InitProcessEnabled bool         `json:"initProcessEnabled"`
	Capabilities       capabilities `json:"capabilities"`
}

type capabilities struct {
	Drop []string `json:"drop"`
}

// ContainerDefinitions is the container definition JSON of a service's
// task: not root, read-only root filesystem, every capability dropped,
// logs to its log group, and its connection strings injected from its
// secret (keys of the secret, never plain environment). Plain environment
// carries only what is not secret: port, region, version and the URLs of
// the services it calls.
func ContainerDefinitions(region, baseURL string, spec ServiceSpec, secretArn, logGroup string) (string, error) {
	env := []keyValue{
		{"PORT", strconv.Itoa(spec.Port)},
		{"TANDEM_REGION", region},
		{"TANDEM_VERSION", ImageVersion(spec.Image)},
	}
	for _, dep := range spec.DependsOn {
		env = append(env, keyValue{strings.ToUpper(strings.ReplaceAll(dep, "-", "_")) + "_URL", baseURL})
	}
	var refs []secretRef
	ref := func(key string) {
		// valueFrom "<secret arn>:<json key>::" takes one key of the secret.
		refs = append(refs, secretRef{Name: key, ValueFrom: secretArn + ":" + key + "::"})
	}
	if spec.Database {
		ref(secrets.DatabaseURL)
		ref(secrets.DatabaseReadURL)
	}
	if spec.Cache {
		ref(secrets.RedisURL)
	}
	c := container{
		Name:                   spec.Name,
		Image:                  spec.Image,
		Essential:              true,
		User:                   TaskUser,
		ReadonlyRootFilesystem: true,
		PortMappings:           []portMapping{{ContainerPort: spec.Port, Protocol: "tcp"}},
		Environment:            env,
		Secrets:                refs,
		LogConfiguration: logConfiguration{
			LogDriver: "awslogs",
			Options: map[string]string{
				"awslogs-group":         logGroup,
				"awslogs-region":        region,
				"awslogs-stream-prefix": spec.Name,
			},
		},
		MountPoints:     []mountPoint{{SourceVolume: "tmp", ContainerPath: "/tmp"}},
		LinuxParameters: linuxParameters{InitProcessEnabled: true, Capabilities: capabilities{Drop: []string{"ALL"}}},
		// Time for the service to drain in-flight requests after SIGTERM
		// (the Fargate maximum).
		StopTimeout: 120,
	}
	b, err := json.Marshal([]container{c})
	return string(b), err
}

// ImageVersion is the tag of an image reference, or its digest, or
// "latest" when it has neither.
func ImageVersion(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		return image[i+1:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return "latest"
}
