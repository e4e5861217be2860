package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
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
	if n := len(c.Webhooks); n > 0 {
		fmt.Fprintf(stdout, ", %d webhook(s)", n)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "configuration file whose Redis to read (default $ONDUTY_CONFIG)")
	asJSON := fs.Bool("json", false, "print JSON")
	url := fs.String("url", "", "ask a running server through its admin API instead, e.g. http://localhost:8080")
	token := fs.String("admin-token", "", "the server's admin token, with --url (default $ONDUTY_ADMIN_TOKEN)")
	// Flags may come before or after the property.
	var props []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		props = append(props, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(props) != 1 {
		return errUsage
	}
	prop := presence.PropertyID(props[0])
	if *token == "" {
		*token = os.Getenv("ONDUTY_ADMIN_TOKEN")
	}
	var (
		out statusReport
		now time.Time
		err error
	)
	switch {
	case *url != "":
		out, err = remoteStatus(ctx, *url, *token, prop)
		now = time.Now()
	case configFile(*file) != "":
		out, now, err = localStatus(ctx, configFile(*file), prop, stderr)
	default:
		return errNoSource
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printReport(stdout, out, now)
	return nil
}

// errNoSource: status has nowhere to read from. It never starts an
// embedded Redis of its own, which would know nothing of the server's
// chats and statuses.
var errNoSource = errors.New("nothing to ask: give --config FILE (the Redis it names) or --url http://HOST:PORT with --admin-token TOKEN " +
	"(or ONDUTY_ADMIN_TOKEN) to ask a running server; for the demo, use the admin token it printed at start, or start it with ONDUTY_ADMIN_TOKEN set")

// localStatus reads the property's presence and chats from the Redis of
// the configuration in file.
func localStatus(ctx context.Context, file string, prop presence.PropertyID, stderr io.Writer) (statusReport, time.Time, error) {
	c, err := config.Load(file, nil)
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	if c.RedisURL == "" {
		return statusReport{}, time.Time{}, fmt.Errorf("%s: redis_url: empty, so the server keeps its state in an embedded Redis of its own that no other process can read; "+
			"ask the server with --url http://HOST:PORT --admin-token TOKEN instead", file)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := c.Directory()
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	if _, ok := dir.Property(prop); !ok {
		return statusReport{}, time.Time{}, fmt.Errorf("unknown property %q (configured: %v)", prop, dir.Properties())
	}
	rdb, closeRedis, err := redisconn.Open(ctx, c.RedisURL.Reveal(), log)
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	defer closeRedis()
	store := presence.NewStore(rdb, dir, presence.Keys{Prefix: c.RedisPrefix}, nil)
	r, err := store.Report(ctx, prop)
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	out := statusReport{Report: r, Surfaces: map[presence.AgentID][]string{}}
	for _, a := range r.Agents {
		if _, ok := dir.Agent(a.ID); ok {
			names := []string{}
			for _, x := range dir.Surfaces(a.ID) {
				names = append(names, string(x))
			}
			out.Surfaces[a.ID] = names
		}
	}
	// The chat lists the admin board shows (Board reads only Redis; the
	// bridge is not run).
	b, err := bridge.New(bridge.Config{Prefix: c.RedisPrefix, Properties: map[presence.PropertyID]bridge.Routing{prop: {}}},
		rdb, store, presence.NewWatcher(store, log), log)
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	chats, err := b.Board(ctx, prop)
	if err != nil {
		return statusReport{}, time.Time{}, err
	}
	out.Chats = &chats
	return out, store.Now(), nil
}

// remoteStatus asks a running server's admin API: the presence report
// (GET /v1/admin/properties/{p}/presence) and the chat lists (…/chats).
func remoteStatus(ctx context.Context, base, token string, prop presence.PropertyID) (statusReport, error) {
	if token == "" {
		return statusReport{}, errors.New("--url needs the server's admin token: --admin-token TOKEN or ONDUTY_ADMIN_TOKEN")
	}
	base = strings.TrimRight(base, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return statusReport{}, fmt.Errorf("--url %q: want http://HOST:PORT or https://HOST", base)
	}
	var out statusReport
	path := "/v1/admin/properties/" + neturl.PathEscape(string(prop))
	if err := adminGet(ctx, base+path+"/presence", token, &out); err != nil {
		return statusReport{}, err
	}
	var chats bridge.BoardChats
	if err := adminGet(ctx, base+path+"/chats", token, &chats); err != nil {
		return statusReport{}, err
	}
	out.Chats = &chats
	return out, nil
}

// adminGet GETs url with the admin token and decodes the JSON answer into
// v; an error answer becomes an error in words.
func adminGet(ctx context.Context, url, token string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return fmt.Errorf("the server refused the admin token (%d)", resp.StatusCode)
		case e.Error.Message != "":
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: not an onduty admin API answer: %w", url, err)
	}
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
	if r.Closed != "" {
		sched = "no (closed: holiday " + r.Closed + ")"
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
