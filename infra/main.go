// Command infra is tandem's Pulumi program. It reads the stack's platform
// spec (the "tandem:platform" config key of stacks/Pulumi.<stack>.yaml),
// validates it exactly as the embedded local platform does, and declares the
// AWS platform the spec describes.
//
// This version declares the primary region's network and ECS cluster; the
// secondary region, load balancing, data stores, routing and the operator's
// resources come next.
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() { pulumi.Run(program) }
