package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func TestCheckRejects(t *testing.T) {
	t.Parallel()
	res := Strings("arn:aws:s3:::bucket")
	tests := []struct {
		name string
		stmt Statement
		want string
	}{
		{"all actions", Statement{Actions: []string{"*"}, Resources: res}, `action "*"`},
		{"all actions of a service", Statement{Actions: []string{"s3:*"}, Resources: res}, `action "s3:*"`},
		{"wildcard in an action name", Statement{Actions: []string{"kms:Describe*"}, Resources: res}, `action "kms:Describe*"`},
		{"no actions", Statement{Resources: res}, "no actions"},
		{"no resources or principals", Statement{Actions: []string{"s3:GetObject"}}, "neither resources nor principals"},
		{"bad effect", Statement{Effect: "Maybe", Actions: []string{"s3:GetObject"}, Resources: res}, `effect "Maybe"`},
		{"bad principal type", Statement{Actions: []string{"s3:GetObject"}, Principals: []Principal{{Type: "Federated", Identifiers: res}}}, `principal type "Federated"`},
		{"empty condition", Statement{Actions: []string{"s3:GetObject"}, Resources: res, Conditions: []Condition{{Test: "Bool"}}}, "needs a test, a variable and values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tt.stmt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
			if _, err := Document(tt.stmt); err == nil {
				t.Error("Document accepted a statement Check rejects")
			}
		})
	}
	if err := Check(); err == nil {
		t.Error("Check accepted a policy without statements")
	}
}

// resolve waits for a document output; outside a Pulumi program outputs of
// known values resolve on their own.
func resolve(t *testing.T, out pulumi.StringOutput) map[string]any {
	t.Helper()
	ch := make(chan string, 1)
	out.ApplyT(func(s string) string { ch <- s; return s })
	var doc map[string]any
	if err := json.Unmarshal([]byte(<-ch), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDocument(t *testing.T) {
	t.Parallel()
	out, err := Document(
		Statement{
			Sid:       "ReadState",
			Actions:   []string{"dynamodb:GetItem", "dynamodb:Query"},
			Resources: []pulumi.StringInput{pulumi.String("arn:aws:dynamodb:us-east-1:123456789012:table/t").ToStringOutput()},
			Conditions: []Condition{
				{Test: "StringEquals", Variable: "aws:RequestedRegion", Values: Strings("us-east-1", "us-west-2")},
			},
		},
		Statement{
			Sid:        "Logs",
			Principals: []Principal{{Type: Service, Identifiers: Strings("logs.us-east-1.amazonaws.com")}},
			Actions:    []string{"kms:Decrypt"},
			Resources:  Strings(AnyResource),
		},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{
				"Sid": "ReadState", "Effect": "Allow",
				"Action":    []any{"dynamodb:GetItem", "dynamodb:Query"},
				"Resource":  []any{"arn:aws:dynamodb:us-east-1:123456789012:table/t"},
				"Condition": map[string]any{"StringEquals": map[string]any{"aws:RequestedRegion": []any{"us-east-1", "us-west-2"}}},
			},
			map[string]any{
				"Sid": "Logs", "Effect": "Allow",
				"Principal": map[string]any{"Service": []any{"logs.us-east-1.amazonaws.com"}},
				"Action":    []any{"kms:Decrypt"},
				"Resource":  []any{"*"},
			},
		},
	}
	if diff := cmp.Diff(want, resolve(t, out)); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

func TestAssumeRole(t *testing.T) {
	t.Parallel()
	out, err := AssumeRole(Service, Strings("ecs-tasks.amazonaws.com"),
		Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: Strings("123456789012")})
	if err != nil {
		t.Fatal(err)
	}
	stmt := resolve(t, out)["Statement"].([]any)[0].(map[string]any)
	if diff := cmp.Diff([]any{"sts:AssumeRole"}, stmt["Action"]); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if _, ok := stmt["Resource"]; ok {
		t.Errorf("trust policy has a Resource: %v", stmt["Resource"])
	}
}
