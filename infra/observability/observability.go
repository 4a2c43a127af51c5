// Package observability declares the CloudWatch alarms of one tandem
// region and the encrypted SNS topic they notify: load balancer 5xx rate
// and latency, unhealthy hosts per target group, database CPU, free
// storage and replica lag, cache CPU and replication lag.
//
// Alarms notify both when they fire and when they clear, and treat missing
// data as not breaching: a standby region's idle target groups and a
// primary node that reports no replication lag are not incidents.
package observability

import (
	"errors"
	"fmt"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Observability"

// TargetGroup is one color of one service.
type TargetGroup struct {
	Service   string
	Color     string
	ArnSuffix pulumi.StringInput
}

// DBInstance is one database instance of the region.
type DBInstance struct {
	Identifier string
	// Replica instances get a replica lag alarm.
	Replica            bool
	AllocatedStorageGB int
}

// CacheGroup is the region's replication group.
type CacheGroup struct {
	ID string
	// MemberIDs are its nodes' cache cluster ids.
	MemberIDs []string
}

// Args configures a region's alarms.
type Args struct {
	Provider        *aws.Provider
	Account         awsenv.Account
	Region          string
	Environment     string
	TelemetryKeyArn pulumi.StringInput
	// AlarmEmail, when set, is subscribed to the topic.
	AlarmEmail            string
	LoadBalancerArnSuffix pulumi.StringInput
	TargetGroups          []TargetGroup
	DBInstances           []DBInstance
	Cache                 *CacheGroup
	// MaxErrorRate is the 5xx share of requests above which the error
	// alarm fires; the deploy policy's own threshold.
	MaxErrorRate float64
	// LatencyThreshold is the p99 target response time above which the
	// latency alarm fires.
	LatencyThreshold time.Duration
	// MaxReplicaLag is the database and cache replication lag above which
	// the lag alarms fire; beyond it a failover would lose more than the
	// spec accepts.
	MaxReplicaLag time.Duration
}

// Observability is a region's alarms and their topic.
type Observability struct {
	pulumi.ResourceState

	TopicArn pulumi.StringOutput
	// AlarmNames lists the alarms declared, in declaration order.
	AlarmNames []string
}

// New declares a region's alarms.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Observability, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("observability: a region provider is required")
	}
	o := &Observability{}
	if err := ctx.RegisterComponentResource(TypeToken, name, o, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(o), pulumi.Provider(args.Provider)}

	topic, err := sns.NewTopic(ctx, name+"-alarms", &sns.TopicArgs{
		DisplayName:    pulumi.String("tandem " + args.Environment + " alarms in " + args.Region),
		KmsMasterKeyId: args.TelemetryKeyArn,
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("observability %s: alarm topic: %w", name, err)
	}
	acct := args.Account
	doc, err := policy.Document(policy.Statement{
		Sid:        "AlarmsPublish",
		Principals: []policy.Principal{{Type: policy.Service, Identifiers: policy.Strings(acct.ServicePrincipal("cloudwatch"))}},
		Actions:    []string{"sns:Publish"},
		Resources:  policy.Inputs(topic.Arn),
		Conditions: []policy.Condition{{Test: "StringEquals", Variable: "aws:SourceAccount", Values: policy.Strings(acct.ID)}},
	})
	if err != nil {
		return nil, fmt.Errorf("observability %s: topic policy: %w", name, err)
	}
	if _, err := sns.NewTopicPolicy(ctx, name+"-alarms", &sns.TopicPolicyArgs{Arn: topic.Arn, Policy: doc}, child...); err != nil {
		return nil, fmt.Errorf("observability %s: topic policy: %w", name, err)
	}
	if args.AlarmEmail != "" {
		if _, err := sns.NewTopicSubscription(ctx, name+"-alarms-email", &sns.TopicSubscriptionArgs{
			Topic:    topic.Arn,
			Protocol: pulumi.String("email"),
			Endpoint: pulumi.String(args.AlarmEmail),
		}, child...); err != nil {
			return nil, fmt.Errorf("observability %s: e-mail subscription: %w", name, err)
		}
	}
	o.TopicArn = topic.Arn

	for _, a := range alarms(args) {
		a.args.AlarmActions = pulumi.Array{topic.Arn}
		a.args.OkActions = pulumi.Array{topic.Arn}
		a.args.TreatMissingData = pulumi.String("notBreaching")
		a.args.Name = pulumi.String(a.name)
		if _, err := cloudwatch.NewMetricAlarm(ctx, a.name, a.args, child...); err != nil {
			return nil, fmt.Errorf("observability %s: alarm %s: %w", name, a.name, err)
		}
		o.AlarmNames = append(o.AlarmNames, a.name)
	}
	if err := ctx.RegisterResourceOutputs(o, pulumi.Map{"topicArn": o.TopicArn}); err != nil {
		return nil, err
	}
	return o, nil
}

type alarm struct {
	name string
	args *cloudwatch.MetricAlarmArgs
}

// alarms lists a region's alarms. Names start with the environment and the
// region, so an alarm e-mail says where it comes from.
func alarms(args *Args) []alarm {
	prefix := "tandem-" + args.Environment + "-" + args.Region + "-"
	var out []alarm
	add := func(name string, a *cloudwatch.MetricAlarmArgs) { out = append(out, alarm{prefix + name, a}) }
	lbDim := func() pulumi.StringMap { return pulumi.StringMap{"LoadBalancer": args.LoadBalancerArnSuffix} }

	add("alb-5xx-rate", &cloudwatch.MetricAlarmArgs{
		AlarmDescription:   pulumi.Sprintf("More than %g of requests answered 5xx by the services or the load balancer", args.MaxErrorRate),
		ComparisonOperator: pulumi.String("GreaterThanThreshold"),
		Threshold:          pulumi.Float64(args.MaxErrorRate),
		EvaluationPeriods:  pulumi.Int(5),
		DatapointsToAlarm:  pulumi.Int(3),
		MetricQueries: cloudwatch.MetricAlarmMetricQueryArray{
			metricQuery("target5xx", "HTTPCode_Target_5XX_Count", "AWS/ApplicationELB", "Sum", lbDim()),
			metricQuery("elb5xx", "HTTPCode_ELB_5XX_Count", "AWS/ApplicationELB", "Sum", lbDim()),
			metricQuery("requests", "RequestCount", "AWS/ApplicationELB", "Sum", lbDim()),
			&cloudwatch.MetricAlarmMetricQueryArgs{
				Id:         pulumi.String("rate"),
				Expression: pulumi.String("IF(requests > 0, (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"),
				Label:      pulumi.String("5xx rate"),
				ReturnData: pulumi.Bool(true),
			},
		},
	})
	add("alb-latency-p99", &cloudwatch.MetricAlarmArgs{
		AlarmDescription:   pulumi.Sprintf("p99 target response time above %s", args.LatencyThreshold),
		Namespace:          pulumi.String("AWS/ApplicationELB"),
		MetricName:         pulumi.String("TargetResponseTime"),
		Dimensions:         lbDim(),
		ExtendedStatistic:  pulumi.String("p99"),
		Period:             pulumi.Int(60),
		EvaluationPeriods:  pulumi.Int(5),
		DatapointsToAlarm:  pulumi.Int(3),
		ComparisonOperator: pulumi.String("GreaterThanThreshold"),
		Threshold:          pulumi.Float64(args.LatencyThreshold.Seconds()),
	})
	for _, tg := range args.TargetGroups {
		add("unhealthy-"+tg.Service+"-"+tg.Color, &cloudwatch.MetricAlarmArgs{
			AlarmDescription:   pulumi.String("Unhealthy " + tg.Color + " targets of " + tg.Service),
			Namespace:          pulumi.String("AWS/ApplicationELB"),
			MetricName:         pulumi.String("UnHealthyHostCount"),
			Dimensions:         pulumi.StringMap{"LoadBalancer": args.LoadBalancerArnSuffix, "TargetGroup": tg.ArnSuffix},
			Statistic:          pulumi.String("Maximum"),
			Period:             pulumi.Int(60),
			EvaluationPeriods:  pulumi.Int(3),
			ComparisonOperator: pulumi.String("GreaterThanThreshold"),
			Threshold:          pulumi.Float64(0),
		})
	}
	for _, db := range args.DBInstances {
		dim := pulumi.StringMap{"DBInstanceIdentifier": pulumi.String(db.Identifier)}
		add("db-cpu-"+db.Identifier, &cloudwatch.MetricAlarmArgs{
			AlarmDescription:   pulumi.String("CPU of " + db.Identifier + " above 80%"),
			Namespace:          pulumi.String("AWS/RDS"),
			MetricName:         pulumi.String("CPUUtilization"),
			Dimensions:         dim,
			Statistic:          pulumi.String("Average"),
			Period:             pulumi.Int(300),
			EvaluationPeriods:  pulumi.Int(3),
			ComparisonOperator: pulumi.String("GreaterThanThreshold"),
			Threshold:          pulumi.Float64(80),
		})
		add("db-free-storage-"+db.Identifier, &cloudwatch.MetricAlarmArgs{
			AlarmDescription:   pulumi.String("Free storage of " + db.Identifier + " below 10% of its allocation"),
			Namespace:          pulumi.String("AWS/RDS"),
			MetricName:         pulumi.String("FreeStorageSpace"),
			Dimensions:         dim,
			Statistic:          pulumi.String("Minimum"),
			Period:             pulumi.Int(300),
			EvaluationPeriods:  pulumi.Int(2),
			ComparisonOperator: pulumi.String("LessThanThreshold"),
			Threshold:          pulumi.Float64(float64(db.AllocatedStorageGB) * (1 << 30) / 10),
		})
		if db.Replica {
			add("db-replica-lag-"+db.Identifier, &cloudwatch.MetricAlarmArgs{
				AlarmDescription:   pulumi.Sprintf("Replica lag of %s above %s", db.Identifier, args.MaxReplicaLag),
				Namespace:          pulumi.String("AWS/RDS"),
				MetricName:         pulumi.String("ReplicaLag"),
				Dimensions:         dim,
				Statistic:          pulumi.String("Maximum"),
				Period:             pulumi.Int(60),
				EvaluationPeriods:  pulumi.Int(3),
				ComparisonOperator: pulumi.String("GreaterThanThreshold"),
				Threshold:          pulumi.Float64(args.MaxReplicaLag.Seconds()),
			})
		}
	}
	if c := args.Cache; c != nil {
		for _, member := range c.MemberIDs {
			dim := pulumi.StringMap{"CacheClusterId": pulumi.String(member)}
			add("cache-cpu-"+member, &cloudwatch.MetricAlarmArgs{
				AlarmDescription:   pulumi.String("Redis engine CPU of " + member + " above 80%"),
				Namespace:          pulumi.String("AWS/ElastiCache"),
				MetricName:         pulumi.String("EngineCPUUtilization"),
				Dimensions:         dim,
				Statistic:          pulumi.String("Average"),
				Period:             pulumi.Int(300),
				EvaluationPeriods:  pulumi.Int(3),
				ComparisonOperator: pulumi.String("GreaterThanThreshold"),
				Threshold:          pulumi.Float64(80),
			})
			add("cache-replication-lag-"+member, &cloudwatch.MetricAlarmArgs{
				AlarmDescription:   pulumi.Sprintf("Replication lag of %s above %s", member, args.MaxReplicaLag),
				Namespace:          pulumi.String("AWS/ElastiCache"),
				MetricName:         pulumi.String("ReplicationLag"),
				Dimensions:         dim,
				Statistic:          pulumi.String("Maximum"),
				Period:             pulumi.Int(60),
				EvaluationPeriods:  pulumi.Int(3),
				ComparisonOperator: pulumi.String("GreaterThanThreshold"),
				Threshold:          pulumi.Float64(args.MaxReplicaLag.Seconds()),
			})
		}
	}
	return out
}

func metricQuery(id, metric, namespace, stat string, dims pulumi.StringMap) *cloudwatch.MetricAlarmMetricQueryArgs {
	return &cloudwatch.MetricAlarmMetricQueryArgs{
		Id: pulumi.String(id),
		Metric: &cloudwatch.MetricAlarmMetricQueryMetricArgs{
			MetricName: pulumi.String(metric),
			Namespace:  pulumi.String(namespace),
			Stat:       pulumi.String(stat),
			Period:     pulumi.Int(60),
			Dimensions: dims,
		},
		ReturnData: pulumi.Bool(false),
	}
}
