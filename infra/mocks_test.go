package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/stacks"
)

// The mocked account, and what the mocked AWS answers.
const (
	account     = "123456789012"
	zoneID      = "Z0TESTZONE1234"
	authToken   = "0123456789abcdef0123456789abcdef"
	albZoneID   = "Z35SXDOTRQ7X7K"
	elbAccounts = "arn:aws:iam::127311923021:root"
)

// domains are what each stack's operator would set with `pulumi config set
// --path`; the checked-in stack files leave them out.
var domains = map[string]string{"dev": "dev.api.tandem.test", "prod": "api.tandem.test"}

func certificateARN(region string) string {
	return "arn:aws:acm:" + region + ":" + account + ":certificate/11111111-2222-3333-4444-555555555555"
}

// Zones each mocked region offers, deliberately out of order: the program
// must not rely on the API's order.
var regionZones = map[string][]string{
	"us-east-1": {"us-east-1c", "us-east-1a", "us-east-1f", "us-east-1b", "us-east-1d", "us-east-1e"},
	"us-west-2": {"us-west-2d", "us-west-2b", "us-west-2a", "us-west-2c"},
}

// Resource and invoke tokens the tests look for.
const (
	tokProvider          = "pulumi:providers:aws"
	tokVpc               = "aws:ec2/vpc:Vpc"
	tokSubnet            = "aws:ec2/subnet:Subnet"
	tokRouteTable        = "aws:ec2/routeTable:RouteTable"
	tokRoute             = "aws:ec2/route:Route"
	tokAssociation       = "aws:ec2/routeTableAssociation:RouteTableAssociation"
	tokDefaultSG         = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
	tokSecurityGroup     = "aws:ec2/securityGroup:SecurityGroup"
	tokSGRule            = "aws:ec2/securityGroupRule:SecurityGroupRule"
	tokNAT               = "aws:ec2/natGateway:NatGateway"
	tokFlowLog           = "aws:ec2/flowLog:FlowLog"
	tokEndpoint          = "aws:ec2/vpcEndpoint:VpcEndpoint"
	tokECSCluster        = "aws:ecs/cluster:Cluster"
	tokECSService        = "aws:ecs/service:Service"
	tokTaskDefinition    = "aws:ecs/taskDefinition:TaskDefinition"
	tokLoadBalancer      = "aws:lb/loadBalancer:LoadBalancer"
	tokListener          = "aws:lb/listener:Listener"
	tokListenerRule      = "aws:lb/listenerRule:ListenerRule"
	tokTargetGroup       = "aws:lb/targetGroup:TargetGroup"
	tokScalableTarget    = "aws:appautoscaling/target:Target"
	tokScalingPolicy     = "aws:appautoscaling/policy:Policy"
	tokDBInstance        = "aws:rds/instance:Instance"
	tokDBParameterGroup  = "aws:rds/parameterGroup:ParameterGroup"
	tokReplicationGroup  = "aws:elasticache/replicationGroup:ReplicationGroup"
	tokGlobalReplication = "aws:elasticache/globalReplicationGroup:GlobalReplicationGroup"
	tokHealthCheck       = "aws:route53/healthCheck:HealthCheck"
	tokRecord            = "aws:route53/record:Record"
	tokAlarm             = "aws:cloudwatch/metricAlarm:MetricAlarm"
	tokLogGroup          = "aws:cloudwatch/logGroup:LogGroup"
	tokTopic             = "aws:sns/topic:Topic"
	tokTable             = "aws:dynamodb/table:Table"
	tokParameter         = "aws:ssm/parameter:Parameter"
	tokRole              = "aws:iam/role:Role"
	tokRolePolicy        = "aws:iam/rolePolicy:RolePolicy"
	tokKey               = "aws:kms/key:Key"
	tokSecret            = "aws:secretsmanager/secret:Secret"
	tokBucket            = "aws:s3/bucketV2:BucketV2"
	tokPublicAccessBlock = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"

	tokGetAZs            = "aws:index/getAvailabilityZones:getAvailabilityZones"
	tokGetCallerIdentity = "aws:index/getCallerIdentity:getCallerIdentity"
	tokGetPartition      = "aws:index/getPartition:getPartition"
	tokGetELBAccount     = "aws:elb/getServiceAccount:getServiceAccount"
)

// registered is one resource the program registered with the engine, as
// the engine would see it: inputs, and the options of the register call
// (parent, provider, protect, ignoreChanges). The options come from the
// RegisterResourceRequest the SDK sends, so they are exactly what `pulumi
// up` would act on.
type registered struct {
	Type          string
	Name          string
	Custom        bool
	Parent        resource.URN
	Provider      string
	Region        string
	Protect       bool
	IgnoreChanges []string
	// Raw are the inputs as sent, secrets marked; In are the same inputs
	// as plain Go values (secrets unwrapped); Out is the mocked state.
	Raw resource.PropertyMap
	In  map[string]any
	Out map[string]any
	ID  string
}

// recorder collects what the program asked of the engine; the mocks are
// called from several goroutines.
type recorder struct {
	mu        sync.Mutex
	resources []registered
	invokes   []pulumi.MockCallArgs
	// regions maps a provider reference to its region.
	regions map[string]string
}

func (r *recorder) all() []registered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]registered(nil), r.resources...)
}

func (r *recorder) calls() []pulumi.MockCallArgs {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pulumi.MockCallArgs(nil), r.invokes...)
}

// ofType lists the resources of a type by name.
func (r *recorder) ofType(typ string) []registered {
	var out []registered
	for _, res := range r.all() {
		if res.Type == typ {
			out = append(out, res)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// inRegion lists the resources of a type declared through a region's
// provider.
func (r *recorder) inRegion(typ, region string) []registered {
	var out []registered
	for _, res := range r.ofType(typ) {
		if res.Region == region {
			out = append(out, res)
		}
	}
	return out
}

// named returns the resource of a type and name, failing the test if
// there is none.
func (r *recorder) named(t *testing.T, typ, name string) registered {
	t.Helper()
	for _, res := range r.ofType(typ) {
		if res.Name == name {
			return res
		}
	}
	t.Fatalf("no %s named %s", typ, name)
	return registered{}
}

// byID finds a resource by its mocked id.
func (r *recorder) byID(id string) (registered, bool) {
	for _, res := range r.all() {
		if res.ID == id {
			return res, true
		}
	}
	return registered{}, false
}

// arns lists every ARN the mocked AWS handed out.
func (r *recorder) arns() map[string]bool {
	out := map[string]bool{}
	for _, res := range r.all() {
		if a, ok := res.Out["arn"].(string); ok {
			out[a] = true
		}
	}
	return out
}

// mocks stands in for the engine and the AWS provider. Resources get an id
// derived from their name and echo their inputs as state, plus the outputs
// AWS would compute (ARNs in AWS's formats, DNS names, endpoints), so that
// what the program builds from outputs can be checked.
type mocks struct {
	rec *recorder
	// zones overrides the zones of every region when set.
	zones []string
}

func (m mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	id := mockID(args.Name)
	region := ""
	m.rec.mu.Lock()
	if m.rec.regions == nil {
		m.rec.regions = map[string]string{}
	}
	if args.TypeToken == tokProvider {
		region, _ = plain(args.Inputs["region"]).(string)
		m.rec.regions[id] = region
	} else {
		region = m.rec.regions[providerID(args.Provider)]
	}
	m.rec.mu.Unlock()

	in, _ := plain(resource.NewObjectProperty(args.Inputs)).(map[string]any)
	out := computed(args.TypeToken, args.Name, region, in)
	if arnID, ok := out["id"].(string); ok {
		// Some resources' ids are ARNs (an ECS service's).
		id = arnID
		delete(out, "id")
	}
	state := args.Inputs.Copy()
	for k, v := range out {
		state[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	full := map[string]any{}
	for k, v := range in {
		full[k] = v
	}
	for k, v := range out {
		full[k] = v
	}

	res := registered{
		Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Provider: args.Provider,
		Region: region, Raw: args.Inputs, In: in, Out: full, ID: id,
	}
	if rpc := args.RegisterRPC; rpc != nil {
		res.Parent = resource.URN(rpc.GetParent())
		res.Protect = rpc.GetProtect()
		res.IgnoreChanges = rpc.GetIgnoreChanges()
	}
	m.rec.mu.Lock()
	m.rec.resources = append(m.rec.resources, res)
	m.rec.mu.Unlock()
	return id, state, nil
}

// computed is what AWS computes for a resource: ARNs in the service's own
// format and the names, addresses and ids other resources refer to.
func computed(typ, name, region string, in map[string]any) map[string]any {
	s := func(k string) string { v, _ := in[k].(string); return v }
	regional := func(service, res string) string {
		return "arn:aws:" + service + ":" + region + ":" + account + ":" + res
	}
	h := shortHash(name)
	switch typ {
	case tokECSCluster:
		return map[string]any{"arn": regional("ecs", "cluster/"+s("name"))}
	case tokECSService:
		cluster := s("cluster")
		return map[string]any{"id": regional("ecs", "service/"+cluster[strings.LastIndex(cluster, "/")+1:]+"/"+s("name"))}
	case tokTaskDefinition:
		return map[string]any{"arn": regional("ecs", "task-definition/"+s("family")+":1"), "revision": 1}
	case tokLoadBalancer:
		suffix := "app/" + name + "/" + h
		return map[string]any{
			"arn": regional("elasticloadbalancing", "loadbalancer/"+suffix), "arnSuffix": suffix,
			"dnsName": name + "-" + h + "." + region + ".elb.amazonaws.com", "zoneId": albZoneID,
		}
	case tokListener:
		return map[string]any{"arn": strings.Replace(s("loadBalancerArn"), ":loadbalancer/", ":listener/", 1) + "/" + h}
	case tokListenerRule:
		return map[string]any{"arn": strings.Replace(s("listenerArn"), ":listener/", ":listener-rule/", 1) + "/" + h}
	case tokTargetGroup:
		suffix := "targetgroup/" + name + "/" + h
		return map[string]any{"arn": regional("elasticloadbalancing", suffix), "arnSuffix": suffix}
	case tokDBInstance:
		id := s("identifier")
		return map[string]any{
			"arn": regional("rds", "db:"+id), "address": id + ".c0ffee.rds.amazonaws.com",
			"masterUserSecrets": []any{map[string]any{"secretArn": regional("secretsmanager", "secret:rds!db-"+h)}},
		}
	case tokReplicationGroup:
		id := s("replicationGroupId")
		return map[string]any{"arn": regional("elasticache", "replicationgroup:"+id), "primaryEndpointAddress": "master." + id + ".c0ffee.cache.amazonaws.com"}
	case tokGlobalReplication:
		gid := "ldgnf-" + s("globalReplicationGroupIdSuffix")
		return map[string]any{"globalReplicationGroupId": gid, "arn": "arn:aws:elasticache::" + account + ":globalreplicationgroup:" + gid}
	case tokTable:
		return map[string]any{"arn": regional("dynamodb", "table/"+s("name"))}
	case tokParameter:
		return map[string]any{"arn": regional("ssm", "parameter"+s("name"))}
	case tokHealthCheck:
		return map[string]any{"arn": "arn:aws:route53:::healthcheck/" + mockID(name)}
	case tokScalableTarget:
		return map[string]any{"arn": regional("application-autoscaling", "scalable-target/"+h)}
	case tokRole:
		return map[string]any{"arn": "arn:aws:iam::" + account + ":role/" + name, "name": name}
	case tokKey:
		return map[string]any{"arn": regional("kms", "key/"+h), "keyId": h}
	case tokSecret:
		return map[string]any{"arn": regional("secretsmanager", "secret:"+s("name")+"-AbCdEf")}
	case tokTopic:
		return map[string]any{"arn": regional("sns", name)}
	case tokLogGroup:
		n := s("name")
		if n == "" {
			n = name
		}
		return map[string]any{"arn": regional("logs", "log-group:"+n), "name": n}
	case tokBucket:
		return map[string]any{"arn": "arn:aws:s3:::" + name, "bucket": name}
	case "aws:rds/subnetGroup:SubnetGroup", tokDBParameterGroup, "aws:elasticache/subnetGroup:SubnetGroup":
		// Auto-named: Pulumi names them after the resource.
		return map[string]any{"name": name + "-" + h[:7]}
	case tokSubnet, tokVpc, tokSecurityGroup, tokRouteTable, tokNAT:
		return map[string]any{"arn": regional("ec2", strings.ToLower(typ[strings.LastIndex(typ, ":")+1:])+"/"+mockID(name))}
	}
	return map[string]any{}
}

func (m mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.rec.mu.Lock()
	m.rec.invokes = append(m.rec.invokes, args)
	region := m.rec.regions[providerID(args.Provider)]
	m.rec.mu.Unlock()
	switch args.Token {
	case tokGetAZs:
		zones := regionZones[region]
		if m.zones != nil {
			zones = m.zones
		}
		return resource.NewPropertyMapFromMap(map[string]any{"id": region, "names": zones}), nil
	case tokGetCallerIdentity:
		return resource.NewPropertyMapFromMap(map[string]any{
			"accountId": account, "arn": "arn:aws:iam::" + account + ":user/deployer", "id": account, "userId": "AIDTEST",
		}), nil
	case tokGetPartition:
		return resource.NewPropertyMapFromMap(map[string]any{
			"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws",
		}), nil
	case tokGetELBAccount:
		return resource.NewPropertyMapFromMap(map[string]any{"id": "127311923021", "arn": elbAccounts}), nil
	}
	return nil, fmt.Errorf("unexpected invoke %s", args.Token)
}

func mockID(name string) string { return name + "-id" }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// plain turns a property value into plain Go values, unwrapping secrets
// and outputs.
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsOutput():
		return plain(v.OutputValue().Element)
	case v.IsNull():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		out := []any{}
		for _, e := range v.ArrayValue() {
			out = append(out, plain(e))
		}
		return out
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = plain(e)
		}
		return out
	case v.IsResourceReference():
		ref := v.ResourceReferenceValue()
		if id, ok := ref.IDString(); ok {
			return id
		}
		return string(ref.URN)
	}
	return nil
}

// get walks a property path ("actions[0].forward.targetGroups") through
// plain values.
func get(v any, path string) any {
	p, err := resource.ParsePropertyPath(path)
	if err != nil {
		panic(err)
	}
	for _, key := range p {
		switch k := key.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func (r registered) str(path string) string { s, _ := get(r.Out, path).(string); return s }
func (r registered) flag(path string) bool  { b, _ := get(r.Out, path).(bool); return b }
func (r registered) num(path string) float64 {
	n, _ := get(r.Out, path).(float64)
	return n
}
func (r registered) list(path string) []any { a, _ := get(r.Out, path).([]any); return a }
func (r registered) strs(path string) []string {
	var out []string
	for _, v := range r.list(path) {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// urn is the URN the mocks give a resource of a type under a parent type.
func urn(stack, parentType, typ, name string) resource.URN {
	return resource.NewURN(tokens.QName(stack), "tandem", tokens.Type(parentType), tokens.Type(typ), name)
}

// providerID is the id part of a provider reference ("<urn>::<id>").
func providerID(ref string) string {
	if i := strings.LastIndex(ref, "::"); i >= 0 {
		return ref[i+2:]
	}
	return ref
}

// providerRef is how resources refer to a region's provider.
func providerRef(stack, region string) string {
	return string(urn(stack, "", tokProvider, "aws-"+region)) + "::" + mockID("aws-"+region)
}

// stackConfig reads a stack file and returns its config the way the Pulumi
// CLI hands it to a program: a map from "namespace:key" to a string, with
// object values encoded as JSON. The account-specific values every stack
// needs (`pulumi config set --path`) are added as an operator would, then
// edit, if not nil, changes the tandem:platform object.
func stackConfig(stack string, edit func(platform map[string]any)) (map[string]string, error) {
	path := stacks.Path("../stacks", stack)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	platform, ok := doc.Config[stacks.ConfigKey].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s is a %T, not an object", path, stacks.ConfigKey, doc.Config[stacks.ConfigKey])
	}
	for _, r := range platform["regions"].([]any) {
		region := r.(map[string]any)
		region["certificateArn"] = certificateARN(region["name"].(string))
	}
	routing := platform["routing"].(map[string]any)
	routing["domain"] = domains[stack]
	routing["hostedZoneId"] = zoneID
	if edit != nil {
		edit(platform)
	}
	cfg := map[string]string{AuthTokenKey: authToken}
	for k, v := range doc.Config {
		if s, ok := v.(string); ok {
			cfg[k] = s
			continue
		}
		js, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("config %s: %v", k, err)
		}
		cfg[k] = string(js)
	}
	return cfg, nil
}

// withConfig supplies stack config and marks the AUTH token secret. The CLI
// passes the same in the PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS
// environment variables, which RunErr decodes into RunInfo; setting the
// fields directly keeps tests parallel.
func withConfig(cfg map[string]string, secretKeys ...string) pulumi.RunOption {
	return func(info *pulumi.RunInfo) {
		info.Config = cfg
		info.ConfigSecretKeys = secretKeys
	}
}

// run runs the program for a stack under mocks.
func run(stack string, cfg map[string]string, m mocks, secretKeys ...string) (*recorder, error) {
	if secretKeys == nil {
		secretKeys = []string{AuthTokenKey}
	}
	err := pulumi.RunErr(program, pulumi.WithMocks("tandem", stack, m), withConfig(cfg, secretKeys...))
	return m.rec, err
}

// stackRuns runs each stack file once and shares the result between tests,
// which only read it.
var stackRuns = map[string]func() (*recorder, error){
	"dev":  sync.OnceValues(func() (*recorder, error) { return runStack("dev") }),
	"prod": sync.OnceValues(func() (*recorder, error) { return runStack("prod") }),
}

func runStack(stack string) (*recorder, error) {
	cfg, err := stackConfig(stack, nil)
	if err != nil {
		return nil, err
	}
	return run(stack, cfg, mocks{rec: &recorder{}})
}

// ranStack returns the shared run of a stack file, failing the test if the
// program failed.
func ranStack(t *testing.T, stack string) *recorder {
	t.Helper()
	rec, err := stackRuns[stack]()
	if err != nil {
		t.Fatalf("program on the %s stack: %v", stack, err)
	}
	return rec
}
