package stacks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Load reads a Pulumi.<stack>.yaml file, decodes its "tandem:platform"
// object, fills defaults and validates it. Every error names the file and
// the field.
func Load(path string) (*Spec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read stack file: %w", err)
	}
	var doc struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", path, err)
	}
	obj, ok := doc.Config[ConfigKey]
	if !ok {
		return nil, fmt.Errorf("%s: no %q key under config:; add the platform spec there (see stacks/Pulumi.local.yaml)", path, ConfigKey)
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, ConfigKey, err)
	}
	spec, err := Decode(js)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

// Path returns the file of a named stack under dir ("stacks").
func Path(dir, stack string) string {
	return filepath.Join(dir, "Pulumi."+stack+".yaml")
}

// Decode parses the JSON form of the spec (what Pulumi's config hands the
// program), rejects unknown fields, fills defaults and validates.
func Decode(js []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %s", ConfigKey, explainDecodeError(err))
	}
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func explainDecodeError(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("field %s: expected %s, got %s", ute.Field, ute.Type, ute.Value)
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s; remove it or fix its spelling (fields are listed in docs/architecture.md)", rest)
	}
	return msg
}

func (s *Spec) applyDefaults() {
	if s.Network.AZCount == 0 {
		s.Network.AZCount = 3
	}
	if s.Database.EngineVersion == "" {
		s.Database.EngineVersion = "15"
	}
	if s.Database.MaxReplicaLag.Duration == 0 {
		s.Database.MaxReplicaLag = D(10 * time.Second)
	}
	if s.Routing.HealthCheckPath == "" {
		s.Routing.HealthCheckPath = "/readyz"
	}
	if s.Routing.FailureThreshold == 0 {
		s.Routing.FailureThreshold = 3
	}
	d := &s.Deploy
	if len(d.Steps) == 0 {
		d.Steps = []int{25, 50, 100}
	}
	if d.StepBake.Duration == 0 {
		d.StepBake = D(3 * time.Second)
	}
	if d.HealthyTimeout.Duration == 0 {
		d.HealthyTimeout = D(60 * time.Second)
	}
	if d.DrainTimeout.Duration == 0 {
		d.DrainTimeout = D(30 * time.Second)
	}
	if d.MaxErrorRate == 0 {
		d.MaxErrorRate = 0.01
	}
	if d.MinSamples == 0 {
		d.MinSamples = 50
	}
	if d.AnalysisTimeout.Duration == 0 {
		d.AnalysisTimeout = D(60 * time.Second)
	}
	if d.MaxErrorRateIncrease == 0 {
		d.MaxErrorRateIncrease = d.MaxErrorRate
	}
	if d.MaxP99.Duration == 0 {
		d.MaxP99 = D(2 * time.Second)
	}
	if d.MaxP99Ratio == 0 {
		d.MaxP99Ratio = 3
	}
	if d.OnDeadline == "" {
		d.OnDeadline = OnDeadlineRollback
	}
	if d.LeaseTTL.Duration == 0 {
		d.LeaseTTL = D(10 * time.Second)
	}
	f := &s.Failover
	if f.Mode == "" {
		f.Mode = FailoverManual
	}
	if f.MaxReplicaLag.Duration == 0 {
		f.MaxReplicaLag = s.Database.MaxReplicaLag
	}
	if f.ProbeInterval.Duration == 0 {
		f.ProbeInterval = D(500 * time.Millisecond)
	}
	if f.FailureThreshold == 0 {
		f.FailureThreshold = 3
	}
	if f.SuccessThreshold == 0 {
		f.SuccessThreshold = 2
	}
	if f.CatchUpTimeout.Duration == 0 {
		f.CatchUpTimeout = D(30 * time.Second)
	}
	if f.MinInterval.Duration == 0 {
		f.MinInterval = D(5 * time.Minute)
	}
	if s.Local.MaxTasks == 0 {
		s.Local.MaxTasks = 2
	}
	for i := range s.Services {
		if s.Services[i].HealthPath == "" {
			s.Services[i].HealthPath = "/readyz"
		}
		if s.Services[i].MaxCount == 0 {
			s.Services[i].MaxCount = min(3*s.Services[i].Count, 100)
		}
	}
	if s.Database.BackupRetentionDays == 0 {
		s.Database.BackupRetentionDays = 7
	}
	if s.Cache.EngineVersion == "" {
		s.Cache.EngineVersion = "7.1"
	}
	if s.Cache.SnapshotRetentionDays == 0 {
		s.Cache.SnapshotRetentionDays = 7
	}
	if s.Observability.LogRetentionDays == 0 {
		s.Observability.LogRetentionDays = 30
	}
	if s.Observability.LatencyThreshold.Duration == 0 {
		s.Observability.LatencyThreshold = D(time.Second)
	}
}
