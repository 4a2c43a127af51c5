package awsenv

import (
	"crypto/sha256"
	"encoding/hex"
)

// Fit returns name unchanged when it has at most max bytes, and otherwise
// a prefix of it followed by "-" and six hex digits of its hash, so that
// two long names that share a prefix stay distinct. AWS limits many names
// (a replication group id to 40 bytes, a target group name to 32), while
// the spec allows environment and service names of 40 bytes each.
func Fit(name string, max int) string {
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:6]
	keep := max - len(suffix)
	prefix := name[:keep]
	for len(prefix) > 0 && prefix[len(prefix)-1] == '-' {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + suffix
}
