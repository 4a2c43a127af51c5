// Command notifications turns claim decisions from the claims.events stream
// into member notifications and serves them.
package main

import (
	"os"

	"github.com/tandemhq/tandem/services/kit/app"
	"github.com/tandemhq/tandem/services/notifications/internal/server"
)

func main() {
	os.Exit(app.Main(server.Name, server.Run))
}
