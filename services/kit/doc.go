// Package kit is the root of what the tandem services share: the environment
// contract with the platform (config), the HTTP server and its middleware
// (web), PostgreSQL pools and migrations (db), the Redis client (cache),
// structured logging with trace ids (logging), OpenTelemetry traces and
// metrics (telemetry), process lifecycle and exit codes (app), opening
// those shared dependencies and serving with an ordered shutdown (boot),
// waiting out dependencies that are still starting (retry), the
// jurisdictions the rules cover (usstates) and the event contracts that
// cross service boundaries (events).
//
// The packages under kit are deliberately small and depend only on the
// standard library, the drivers the services already use and
// OpenTelemetry, so that a service can adopt one without dragging in the
// others.
package kit
