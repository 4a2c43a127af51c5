// Command claims adjudicates Medicaid claims against the eligibility
// service and announces each decision on the claims.events stream.
package main

import (
	"os"

	"github.com/tandemhq/tandem/services/claims/internal/server"
	"github.com/tandemhq/tandem/services/kit/app"
)

func main() {
	os.Exit(app.Main(server.Name, server.Run))
}
