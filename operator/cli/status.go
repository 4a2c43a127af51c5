package cli

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/topology"
)

func newStatusCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the platform: front door, regions, databases, caches, weights",
		Long: `Show the running platform: the front door's URL and active region, and per
region its proxy URL; the database and cache servers behind its endpoints (named
region-zone), their roles and their in-region standbys' state (sync, streaming,
not streaming, rebuilding, down, fenced); every in-region failover; and each service's weights
and tasks per color. -o json prints the topology document (frontDoor.url,
regions[].proxyUrl, activeRegion, regions[].database.standby,
regions[].database.inRegionFailovers, regions[].services[].weights).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), o) },
	}
}

func runStatus(ctx context.Context, o *Options) error {
	c, err := local.Dial(o.StateDir)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if o.json() {
		return writeJSON(o.Out, st)
	}
	printStatus(o, st)
	return nil
}

func printStatus(o *Options, st topology.Status) {
	fmt.Fprintf(o.Out, "stack %s, platform pid %d, up since %s\n", st.Stack, st.PID, st.StartedAt.Format("15:04:05"))
	fence := ""
	if st.FrontDoor.Fenced {
		fence = " (FENCED: routing nowhere)"
	}
	fmt.Fprintf(o.Out, "front door %s -> %s%s\n\n", st.FrontDoor.URL, st.ActiveRegion, fence)
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tROLE\tPROXY\tDATABASE\tDB STANDBY\tCACHE\tCACHE REPLICA")
	for _, r := range st.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s %s\t%s\t%s %s\t%s\n", r.Name, r.Role, r.ProxyURL,
			r.Database.Name, r.Database.Role, r.Database.Position, standby(r.Database.Standby), r.Cache.Name, r.Cache.Role, standby(r.Cache.Standby))
	}
	tw.Flush()
	var events []string
	for _, r := range st.Regions {
		for kind, fos := range map[string][]topology.ZoneFailover{"database": r.Database.Failovers, "cache": r.Cache.Failovers} {
			for _, f := range fos {
				events = append(events, fmt.Sprintf("%s %s %s: %s -> %s in %dms (%s)", f.At.Format("15:04:05"), r.Name, kind, f.From, f.To, f.TookMs, f.Reason))
			}
		}
	}
	if len(events) > 0 {
		sort.Strings(events)
		fmt.Fprintln(o.Out, "\nin-region failovers:")
		for _, e := range events {
			fmt.Fprintln(o.Out, "  "+e)
		}
	}
	fmt.Fprintln(o.Out)
	tw = tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSERVICE\tWEIGHTS (blue/green)\tFLEETS")
	for _, r := range st.Regions {
		for _, s := range r.Services {
			colors := make([]string, 0, len(s.Colors))
			for c := range s.Colors {
				colors = append(colors, c)
			}
			sort.Strings(colors)
			fleets := "-"
			for i, c := range colors {
				cs := s.Colors[c]
				f := fmt.Sprintf("%s %s %d/%d healthy", c, cs.Version, cs.Healthy, cs.Tasks)
				if i == 0 {
					fleets = f
				} else {
					fleets += ", " + f
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", r.Name, s.Name, s.Weights.Blue, s.Weights.Green, fleets)
		}
	}
	tw.Flush()
}

func standby(s *topology.StandbyStatus) string {
	if s == nil {
		return "-"
	}
	return s.Name + " " + s.State
}
