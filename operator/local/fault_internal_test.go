package local

import "testing"

func TestConninfoAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, conninfo, want string
	}{
		{"as the platform writes it", "host=127.0.0.1 port=5433 user=tandem password=abc application_name=local-b", "127.0.0.1:5433"},
		{"quoted values", `password='it\'s = quoted' host='127.0.0.1' port = '6000'`, "127.0.0.1:6000"},
		{"empty", "", ""},
		{"no port", "host=127.0.0.1 user=tandem", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := conninfoAddr(tc.conninfo); got != tc.want {
				t.Errorf("conninfoAddr(%q) = %q, want %q", tc.conninfo, got, tc.want)
			}
		})
	}
}

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	if got := quoteLiteral("password=it's"); got != "'password=it''s'" {
		t.Errorf("quoteLiteral = %s", got)
	}
}
