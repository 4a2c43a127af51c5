package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newReprotectCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "reprotect REGION",
		Short: "Rebuild a former primary region as a replica of the current primary",
		Long: `Rebuild REGION — a region the platform failed away from — as a replica of the
current primary: its PostgreSQL is rewound with pg_rewind (only what diverged
is copied) or, if that fails, rebuilt from a fresh base backup, then started as
a standby; its redis replicates from the primary's. tandem then checks that the
database really streams and the cache link is up; a rejoin that does not stream
is reported as failed (exit 1), never as healthy.

Failback is reprotect followed by a planned switchover:
  tandem reprotect local-a && tandem failover --to local-a --planned --yes`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec()
			if err != nil {
				return err
			}
			if _, ok := spec.Region(args[0]); !ok {
				return usagef("unknown region %q; this stack has regions %s", args[0], strings.Join(spec.RegionNames(), ", "))
			}
			c, err := o.dial(cmd.Context())
			if err != nil {
				return err
			}
			if active, err := c.ActiveRegion(cmd.Context()); err == nil && active == args[0] {
				return usagef("%s is the active region; reprotect rebuilds a region the platform failed away from", args[0])
			}
			what, err := c.Reprotect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.json() {
				return writeJSON(o.Out, map[string]string{"region": args[0], "result": what})
			}
			fmt.Fprintf(o.Out, "%s reprotected: %s\n", args[0], what)
			return nil
		},
	}
}
