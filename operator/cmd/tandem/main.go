// Command tandem drives blue/green deploys and region failover on AWS or on
// the embedded local platform. All logic lives in operator/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandemhq/tandem/operator/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.NewRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
	}
	os.Exit(cli.ExitCode(err))
}
