package usstates

import (
	"slices"
	"testing"
)

func TestCodes(t *testing.T) {
	t.Parallel()
	c := Codes()
	if len(c) != 51 {
		t.Fatalf("%d codes, want 51 (50 states and DC)", len(c))
	}
	if !slices.IsSorted(c) {
		t.Fatal("codes are not sorted; Valid relies on it")
	}
	if len(slices.Compact(slices.Clone(c))) != 51 {
		t.Fatal("codes contain duplicates")
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want bool
	}{
		{"OH", true}, {"DC", true}, {"AK", true}, {"HI", true}, {"WY", true}, {"AL", true},
		{"PR", false}, {"GU", false}, {"VI", false}, {"oh", false}, {"", false}, {"OHI", false}, {"XX", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.code); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}
