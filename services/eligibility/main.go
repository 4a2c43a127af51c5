// Command eligibility answers whether a household's income qualifies it for
// SNAP or Medicaid under the rule set in effect.
package main

import (
	"os"

	"github.com/tandemhq/tandem/services/eligibility/internal/server"
	"github.com/tandemhq/tandem/services/kit/app"
)

func main() {
	os.Exit(app.Main(server.Name, server.Run))
}
