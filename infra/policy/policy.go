// Package policy builds IAM policy documents (identity policies, trust
// policies, key, bucket and topic policies) from typed statements whose
// principals, resources and condition values may be Pulumi outputs.
//
// Every action must be named in full: Document refuses "*" and any
// wildcard ("s3:*", "kms:Describe*"), so a policy grants exactly the calls
// it lists and a new AWS API never widens it. Resources may be "*" only
// where the caller writes it explicitly; AnyResource marks those places.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// AnyResource is the resource of a statement whose actions AWS does not
// scope to a resource (Describe* calls, ecr:GetAuthorizationToken), and of
// a resource policy's statements, where "*" means the resource the policy
// is attached to.
const AnyResource = "*"

// Principal types.
const (
	AWS     = "AWS"
	Service = "Service"
)

// Statement is one statement of a policy document.
type Statement struct {
	Sid string
	// Effect is "Allow" when empty.
	Effect     string
	Principals []Principal
	Actions    []string
	Resources  []pulumi.StringInput
	Conditions []Condition
}

// Principal is who a resource or trust policy statement applies to.
type Principal struct {
	Type        string
	Identifiers []pulumi.StringInput
}

// Condition is one condition of a statement: Test (the operator, such as
// StringEquals), the context key and its allowed values.
type Condition struct {
	Test     string
	Variable string
	Values   []pulumi.StringInput
}

// Strings turns plain strings into inputs for Resources, Identifiers and
// Values.
func Strings(ss ...string) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(ss))
	for i, s := range ss {
		out[i] = pulumi.String(s)
	}
	return out
}

// Inputs turns outputs (or any string inputs) into a slice for Resources,
// Identifiers and Values.
func Inputs[T pulumi.StringInput](in ...T) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

// actionPattern is a fully named action: service prefix, colon, API name.
var actionPattern = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9]+$`)

// Check reports what is wrong with the statements, without resolving any
// output.
func Check(statements ...Statement) error {
	if len(statements) == 0 {
		return errors.New("policy has no statements")
	}
	var errs []error
	for i, s := range statements {
		name := s.Sid
		if name == "" {
			name = fmt.Sprintf("statement %d", i)
		}
		if s.Effect != "" && s.Effect != "Allow" && s.Effect != "Deny" {
			errs = append(errs, fmt.Errorf("%s: effect %q is neither Allow nor Deny", name, s.Effect))
		}
		if len(s.Actions) == 0 {
			errs = append(errs, fmt.Errorf("%s: no actions", name))
		}
		for _, a := range s.Actions {
			if !actionPattern.MatchString(a) {
				errs = append(errs, fmt.Errorf("%s: action %q is not a fully named action (service:Action, no wildcards)", name, a))
			}
		}
		if len(s.Resources) == 0 && len(s.Principals) == 0 {
			errs = append(errs, fmt.Errorf("%s: neither resources nor principals; an identity policy statement needs resources", name))
		}
		for _, p := range s.Principals {
			if p.Type != AWS && p.Type != Service {
				errs = append(errs, fmt.Errorf("%s: principal type %q is neither %s nor %s", name, p.Type, AWS, Service))
			}
			if len(p.Identifiers) == 0 {
				errs = append(errs, fmt.Errorf("%s: %s principal without identifiers", name, p.Type))
			}
		}
		for _, c := range s.Conditions {
			if c.Test == "" || c.Variable == "" || len(c.Values) == 0 {
				errs = append(errs, fmt.Errorf("%s: condition %+v needs a test, a variable and values", name, c))
			}
		}
	}
	return errors.Join(errs...)
}

// Document checks the statements and returns the policy document as JSON
// once every output in them is known.
func Document(statements ...Statement) (pulumi.StringOutput, error) {
	if err := Check(statements...); err != nil {
		return pulumi.StringOutput{}, err
	}
	// Every input goes into one flat list; the statements are rebuilt
	// from the resolved list by position.
	var inputs []any
	push := func(in []pulumi.StringInput) {
		for _, v := range in {
			inputs = append(inputs, v)
		}
	}
	for _, s := range statements {
		for _, p := range s.Principals {
			push(p.Identifiers)
		}
		push(s.Resources)
		for _, c := range s.Conditions {
			push(c.Values)
		}
	}
	doc := pulumi.All(inputs...).ApplyT(func(vals []any) (string, error) {
		next := 0
		take := func(n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = vals[next].(string)
				next++
			}
			return out
		}
		out := document{Version: "2012-10-17"}
		for _, s := range statements {
			js := jsonStatement{Sid: s.Sid, Effect: s.Effect, Action: slices.Clone(s.Actions)}
			if js.Effect == "" {
				js.Effect = "Allow"
			}
			if len(s.Principals) > 0 {
				js.Principal = map[string][]string{}
				for _, p := range s.Principals {
					js.Principal[p.Type] = append(js.Principal[p.Type], take(len(p.Identifiers))...)
				}
			}
			js.Resource = take(len(s.Resources))
			if len(s.Conditions) > 0 {
				js.Condition = map[string]map[string][]string{}
				for _, c := range s.Conditions {
					if js.Condition[c.Test] == nil {
						js.Condition[c.Test] = map[string][]string{}
					}
					js.Condition[c.Test][c.Variable] = take(len(c.Values))
				}
			}
			out.Statement = append(out.Statement, js)
		}
		b, err := json.Marshal(out)
		return string(b), err
	}).(pulumi.StringOutput)
	return doc, nil
}

// AssumeRole is the trust policy that lets principals of one type (AWS
// services or IAM principals) assume a role, with optional conditions.
func AssumeRole(principalType string, identifiers []pulumi.StringInput, conditions ...Condition) (pulumi.StringOutput, error) {
	return Document(Statement{
		Sid:        "AssumeRole",
		Principals: []Principal{{Type: principalType, Identifiers: identifiers}},
		Actions:    []string{"sts:AssumeRole"},
		Conditions: conditions,
	})
}

type document struct {
	Version   string          `json:"Version"`
	Statement []jsonStatement `json:"Statement"`
}

type jsonStatement struct {
	Sid       string                         `json:"Sid,omitempty"`
	Effect    string                         `json:"Effect"`
	Principal map[string][]string            `json:"Principal,omitempty"`
	Action    []string                       `json:"Action"`
	Resource  []string                       `json:"Resource,omitempty"`
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}
