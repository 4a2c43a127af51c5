// Package e2e tests the three service binaries together, as the platform
// runs them: built with go build, configured only through environment
// variables, talking to real PostgreSQL and Redis, and stopped with SIGTERM.
// It holds no code of its own besides its tests.
package e2e
