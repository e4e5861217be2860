package widget

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Chat counts for metrics are read at most once per countsTTL; a failed
// read is answered with the last counts while they are younger than
// countsKeep, else the chat gauges are left out.
const (
	countsTTL     = 5 * time.Second
	countsKeep    = time.Minute
	countsTimeout = 2 * time.Second
)

// collector computes the board's gauges at scrape time: agents by effective
// status and widget status from the watcher's memory (no Redis), and open
// chats by state from one cached Redis pipeline. It is registered on the
// server's own registry, so several servers in one process never collide.
type collector struct {
	watcher *presence.Watcher
	dir     *presence.Directory
	chats   Bridge
	ctx     context.Context // cancelled when the server stops
	log     *slog.Logger
	ttl     time.Duration // countsTTL; tests shorten it

	mu     sync.Mutex // held while reading: concurrent scrapes share one read
	at     time.Time  // of the last attempt
	okAt   time.Time  // of the last success
	counts map[presence.PropertyID]bridge.ChatCounts
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- metrics.AgentsDesc
	ch <- metrics.WidgetStatusDesc
	ch <- metrics.ChatsDesc
	ch <- metrics.PresenceStaleDesc
}

var (
	agentStatuses  = []presence.Status{presence.Online, presence.Away, presence.Invisible, presence.Offline}
	widgetStatuses = []presence.Status{presence.Online, presence.Away, presence.Offline}
)

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	stale := 0.0
	if c.watcher.Stale() {
		stale = 1
	}
	ch <- prometheus.MustNewConstMetric(metrics.PresenceStaleDesc, prometheus.GaugeValue, stale)
	for _, p := range c.dir.Properties() {
		snap, _ := c.watcher.Snapshot(p)
		if snap == nil {
			continue
		}
		n := make(map[presence.Status]int, len(agentStatuses))
		for _, a := range snap.Report.Agents {
			n[a.Effective]++
		}
		for _, st := range agentStatuses {
			ch <- prometheus.MustNewConstMetric(metrics.AgentsDesc, prometheus.GaugeValue, float64(n[st]), string(p), string(st))
		}
		for _, st := range widgetStatuses {
			v := 0.0
			if snap.Report.Status == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(metrics.WidgetStatusDesc, prometheus.GaugeValue, v, string(p), string(st))
		}
	}
	for p, cc := range c.chatCounts() {
		ch <- prometheus.MustNewConstMetric(metrics.ChatsDesc, prometheus.GaugeValue, float64(cc.Pending), string(p), string(bridge.Pending))
		ch <- prometheus.MustNewConstMetric(metrics.ChatsDesc, prometheus.GaugeValue, float64(cc.Active), string(p), string(bridge.Active))
		ch <- prometheus.MustNewConstMetric(metrics.ChatsDesc, prometheus.GaugeValue, float64(cc.Offline), string(p), "offline")
	}
}

// chatCounts returns the cached counts, reading them again when older than
// countsTTL; nil when Redis has been failing.
func (c *collector) chatCounts() map[presence.PropertyID]bridge.ChatCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.at) >= c.ttl {
		c.at = now
		ctx, cancel := context.WithTimeout(c.ctx, countsTimeout)
		counts, err := c.chats.ChatCounts(ctx)
		cancel()
		if err != nil {
			c.log.Warn("metrics: chat counts unavailable", "err", err)
		} else {
			c.counts, c.okAt = counts, now
		}
	}
	if now.Sub(c.okAt) > countsKeep {
		return nil
	}
	return c.counts
}
