package topology

import "testing"

func TestParsePosition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0/0", 0, true}, {"16/B374D848", 0x16<<32 | 0xB374D848, true}, {"1/0", 1 << 32, true},
		{"", 0, false}, {"12", 0, false}, {"x/1", 0, false},
	} {
		got, err := ParsePosition(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePosition(%q) = %d, %v", tc.in, got, err)
		}
	}
}
