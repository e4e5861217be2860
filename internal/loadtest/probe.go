package loadtest

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// probeAdapter is an agent surface without a platform: Deliver records when
// the bridge handed it a message, and never waits or fails. It measures the
// bridge's own relay path (HTTP, Redis, outbox) with no platform pacing.
type probeAdapter struct {
	agents    map[presence.AgentID]bool
	onDeliver func(at time.Time, d bridge.Delivery)
}

var _ bridge.Adapter = (*probeAdapter)(nil)

func (p *probeAdapter) Name() string                        { return "probe" }
func (p *probeAdapter) Reaches(agent presence.AgentID) bool { return p.agents[agent] }
func (p *probeAdapter) Shared(presence.PropertyID) bool     { return false }

func (p *probeAdapter) Run(ctx context.Context, _ bridge.Host) error {
	<-ctx.Done()
	return nil
}

func (p *probeAdapter) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, p.deliverOne(ctx, d)
}

func (p *probeAdapter) deliverOne(_ context.Context, d bridge.Delivery) error {
	if p.onDeliver != nil {
		p.onDeliver(time.Now(), d)
	}
	return nil
}

// A marker tags a message the load test sent, so that its arrival can be
// matched to its sending: "#<kind><run>.<seq>#", kind 'm' for a visitor
// message and 'r' for an agent reply.
func marker(kind byte, run, seq int) string {
	return "#" + string(kind) + strconv.Itoa(run) + "." + strconv.Itoa(seq) + "#"
}

// findMarker finds the first marker of kind in s.
func findMarker(s string, kind byte) (run, seq int, ok bool) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '#' || s[i+1] != kind {
			continue
		}
		rest := s[i+2:]
		end := strings.IndexByte(rest, '#')
		if end < 0 {
			return 0, 0, false
		}
		a, b, found := strings.Cut(rest[:end], ".")
		r, err1 := strconv.Atoi(a)
		q, err2 := strconv.Atoi(b)
		if found && err1 == nil && err2 == nil {
			return r, q, true
		}
	}
	return 0, 0, false
}
