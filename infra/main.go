// Command infra is tandem's Pulumi program. It reads the stack's platform
// spec (the "tandem:platform" config key of stacks/Pulumi.<stack>.yaml),
// validates it exactly as the embedded local platform does and then
// against what AWS needs, and declares the AWS platform the spec
// describes: per region keys, network, cluster and alarms; across regions
// the database with its cross-region replica, the cache with its Global
// Datastore, the services' secrets, Route 53 failover routing and the
// operator's state table, topology document and role.
//
// docs/infra.md says what each stack creates and how to deploy it.
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() { pulumi.Run(program) }
