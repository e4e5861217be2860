package presence

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkWatcherApply applies one agent's activity with 100 properties of
// 10 agents each: every agent message on any surface does this.
//
//	go test ./presence -run '^$' -bench WatcherApply
func BenchmarkWatcherApply(b *testing.B) {
	var props []Property
	var agents []Agent
	for p := range 100 {
		pid := PropertyID(fmt.Sprintf("p%d", p))
		props = append(props, Property{ID: pid})
		for a := range 10 {
			agents = append(agents, Agent{ID: AgentID(fmt.Sprintf("a%d-%d", p, a)), Properties: []PropertyID{pid}})
		}
	}
	dir, err := NewDirectory(props, agents)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	w := NewWatcher(NewStore(nil, dir, Keys{}, func() time.Time { return now }), slog.New(slog.DiscardHandler))
	var v int64
	for b.Loop() {
		v++
		w.Apply("a7-3", State{Status: Online, LastActivity: now, Version: v})
	}
}
