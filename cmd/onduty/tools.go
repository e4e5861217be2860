package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/config"
	"github.com/onduty/onduty/internal/redisconn"
	"github.com/onduty/onduty/presence"
)

// configFile is --config, else ONDUTY_CONFIG, else "" (the demo).
func configFile(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("ONDUTY_CONFIG")
}

func checkConfig(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	c, err := config.Load(args[0], nil)
	var ps config.Problems
	if errors.As(err, &ps) {
		fmt.Fprintf(stdout, "%s: %d problem(s):\n", args[0], len(ps))
		for _, p := range ps {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		return fmt.Errorf("%s is not valid", args[0])
	}
	if err != nil {
		return err
	}
	// Warnings do not make the file invalid: exit 0.
	if ws := c.Warnings(); len(ws) > 0 {
		fmt.Fprintf(stdout, "%s: %d warning(s):\n", args[0], len(ws))
		for _, w := range ws {
			fmt.Fprintf(stdout, "  %s\n", w)
		}
	}
	fmt.Fprintf(stdout, "%s: OK (%d properties, %d agents", args[0], len(c.Properties), len(c.Agents))
	if c.Telegram != nil {
		fmt.Fprintf(stdout, ", telegram %s", c.Telegram.Mode)
	}
	if c.Slack != nil {
		fmt.Fprintf(stdout, ", slack %s", c.Slack.Mode)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "configuration file (default $ONDUTY_CONFIG, else the demo)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	prop := presence.PropertyID(fs.Arg(0))
	c, err := config.Load(configFile(*file), nil)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := c.Directory()
	if err != nil {
		return err
	}
	if _, ok := dir.Property(prop); !ok {
		return fmt.Errorf("unknown property %q (configured: %v)", prop, dir.Properties())
	}
	rdb, closeRedis, err := redisconn.Open(ctx, c.RedisURL.Reveal(), log)
	if err != nil {
		return err
	}
	defer closeRedis()
	store := presence.NewStore(rdb, dir, presence.Keys{Prefix: c.RedisPrefix}, nil)
	if c.RedisURL == "" {
		// A fresh embedded Redis knows only the initial statuses.
		if err := store.Init(ctx); err != nil {
			return err
		}
	}
	r, err := store.Report(ctx, prop)
	if err != nil {
		return err
	}
	out := statusReport{Report: r, Surfaces: map[presence.AgentID][]string{}}
	for _, a := range r.Agents {
		if agent, ok := dir.Agent(a.ID); ok {
			out.Surfaces[a.ID] = agent.Surfaces()
		}
	}
	// The chat lists the admin board shows (Board reads only Redis; the
	// bridge is not run).
	b, err := bridge.New(bridge.Config{Prefix: c.RedisPrefix, Properties: map[presence.PropertyID]bridge.Routing{prop: {}}},
		rdb, store, presence.NewWatcher(store, log), log)
	if err != nil {
		return err
	}
	chats, err := b.Board(ctx, prop)
	if err != nil {
		return err
	}
	out.Chats = &chats
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printReport(stdout, out, store.Now())
	return nil
}

// statusReport is what `onduty status` prints: the presence report the
// admin API and the board show, where each agent can be reached, and the
// property's open chats.
type statusReport struct {
	presence.Report
	// Surfaces lists each agent's chat apps ("telegram", "slack") as configured.
	Surfaces map[presence.AgentID][]string `json:"surfaces"`
	Chats    *bridge.BoardChats            `json:"chats,omitempty"`
}

func printReport(w io.Writer, r statusReport, now time.Time) {
	fmt.Fprintf(w, "%s: %s (widget mode %s) — %s\n", r.Property, r.Status, r.Mode, r.Reason)
	sched := "yes"
	if !r.InSchedule {
		sched = "no"
	}
	fmt.Fprintf(w, "in schedule: %s\n\n", sched)
	owned := map[presence.AgentID]int{}
	if r.Chats != nil {
		for _, c := range r.Chats.Active {
			owned[c.Owner]++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tCHOSEN\tCONDITION\tLAST ACTIVITY\tEFFECTIVE\tCOUNTS\tSURFACES\tCHATS\tWHY")
	for _, a := range r.Agents {
		last := "never"
		if a.LastActivity != nil {
			last = ago(now.Sub(*a.LastActivity))
		}
		counts := "no"
		if a.Counts {
			counts = "yes"
		}
		surf := strings.Join(r.Surfaces[a.ID], ",")
		if surf == "" {
			surf = "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, a.Status, a.Condition, last, a.Effective, counts, surf, owned[a.ID], a.Reason)
	}
	tw.Flush()
	if r.Chats == nil {
		return
	}
	n := r.Chats.Counts
	fmt.Fprintf(w, "\nchats: %d waiting, %d active, %d offline messages unanswered\n", n.Pending, n.Active, n.Offline)
	for _, c := range r.Chats.Pending {
		fmt.Fprintf(w, "  waiting %s: %s\n", time.Duration(c.WaitingSeconds)*time.Second, c.Visitor.Label())
	}
	for _, c := range r.Chats.Active {
		fmt.Fprintf(w, "  active: %s with %s\n", c.Visitor.Label(), c.OwnerName)
	}
	for _, c := range r.Chats.Offline {
		fmt.Fprintf(w, "  offline message %s: %s\n", ago(now.Sub(c.CreatedAt)), c.Visitor.Label())
	}
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
