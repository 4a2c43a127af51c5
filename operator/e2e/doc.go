// Package e2e holds end-to-end tests of the operator against the embedded
// local platform: real PostgreSQL, Redis, service processes and proxies, the
// tandem command run (and killed) as a process, and load through the front
// door.
package e2e
