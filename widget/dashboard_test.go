package widget

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onduty/onduty/internal/metrics"
)

// TestGrafanaDashboard checks that docs/grafana-dashboard.json is valid and
// that every onduty metric its queries use is one the server exposes.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}

	e := newEnv(t)
	known := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range []prometheus.Collector{metrics.HTTPRequests, metrics.ChatsStarted, metrics.OfflineMessages, metrics.MessagesRelayed,
			metrics.OpenStreams, metrics.Deliveries, metrics.FirstResponse, metrics.MissedChats, metrics.AdapterUp,
			metrics.AcceptErrors, metrics.ConnectionsRefused, metrics.Refused, e.srv.coll} {
			c.Describe(ch)
		}
		close(ch)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}

	name := regexp.MustCompile(`onduty_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			queries++
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(n, suf); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q uses %s, which the server does not expose", p.Title, n)
				}
			}
		}
	}
	for _, want := range []string{"onduty_agents", "onduty_widget_status", "onduty_chats", "onduty_first_response_seconds", "onduty_missed_chats_total", "onduty_deliveries_total"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the dashboard does not graph %s", want)
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
}
