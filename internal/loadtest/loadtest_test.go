package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain lets the capacity phase start this test binary as its stream holder.
func TestMain(m *testing.M) {
	if os.Getenv(HolderEnv) == "1" {
		if err := Hold(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testConfig is Quick on the Redis tests use: the real one when
// ONDUTY_TEST_REDIS_URL is set, else embedded.
func testConfig(t *testing.T) Config {
	cfg := Quick()
	cfg.RedisURL = os.Getenv("ONDUTY_TEST_REDIS_URL")
	if cfg.RedisURL == "" {
		cfg.RedisURL = "embedded"
	}
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	cfg.HolderCommand = []string{os.Args[0]}
	return cfg
}

// TestQuickRunProducesEveryFigure runs the whole command with tiny numbers
// and checks that every figure is there (not its value: speed is never asserted).
func TestQuickRunProducesEveryFigure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	goroutines := ownGoroutines()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Everything Run started has stopped. fasthttp's own idle cleaners end
	// on their own schedule (about 10s) and are not counted.
	if err := waitUntil(ctx, 5*time.Second, func() bool { return ownGoroutines() <= goroutines }); err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Run, %d before:\n%s", ownGoroutines(), goroutines, buf[:runtime.Stack(buf, true)])
	}

	if got, want := len(rep.Status), 2*len(cfg.Conns); got != want {
		t.Errorf("status rows = %d, want %d (onduty and bare Fiber at each level)", got, want)
	}
	for _, s := range rep.Status {
		if s.Requests == 0 || s.RPS <= 0 || s.Latency.P50ms <= 0 || s.Latency.P999ms < s.Latency.P50ms {
			t.Errorf("status row %+v: missing figures", s)
		}
		if s.Errors != 0 {
			t.Errorf("status row %s/%d: %d errors", s.Server, s.Conns, s.Errors)
		}
	}
	if len(rep.Ratios) != len(cfg.Conns) {
		t.Errorf("ratios = %d, want %d", len(rep.Ratios), len(cfg.Conns))
	}
	for _, r := range rep.Ratios {
		if r.Throughput <= 0 || r.P99 <= 0 {
			t.Errorf("ratio %+v: missing", r)
		}
	}

	p := rep.Propagation
	if p == nil {
		t.Fatal("no propagation figures")
	}
	if p.Missed != 0 || p.PerStream.Count != uint64(cfg.Streams*cfg.Changes) || p.AllStreams.Count != uint64(cfg.Changes) {
		t.Errorf("propagation = %+v: want every stream to see all %d changes", p, cfg.Changes)
	}

	type key struct{ path, dir string }
	seen := map[key]int{}
	for _, r := range rep.Relay {
		seen[key{r.Path, r.Direction}]++
		if r.Failed != 0 || r.Received != r.Sent || r.Sent == 0 || r.Latency.P99ms <= 0 {
			t.Errorf("relay row %+v: want every message sent and received, with latencies", r)
		}
	}
	for _, path := range []string{"bridge", "telegram"} {
		for _, dir := range []string{"visitor_to_agent", "agent_to_visitor"} {
			want := len(cfg.Rates)
			if path == "telegram" {
				want = len(cfg.TelegramRates)
			}
			if seen[key{path, dir}] != want {
				t.Errorf("relay %s %s: %d rows, want %d", path, dir, seen[key{path, dir}], want)
			}
		}
	}

	if len(rep.Capacity) != len(cfg.Capacity) {
		t.Fatalf("capacity rows = %d, want %d (limit: %q)", len(rep.Capacity), len(cfg.Capacity), rep.CapacityLimit)
	}
	for i, c := range rep.Capacity {
		if c.Streams != cfg.Capacity[i] || c.Held < int64(c.Streams) || c.RSSMB <= 0 || c.GoroutinesPerStream <= 0 {
			t.Errorf("capacity row %+v: want %d streams held, RSS and goroutines", c, cfg.Capacity[i])
		}
	}

	if len(rep.StatusStreams) != len(cfg.StatusStreams) {
		t.Fatalf("status stream rows = %d, want %d (limit: %q)", len(rep.StatusStreams), len(cfg.StatusStreams), rep.StatusStreamsLimit)
	}
	for i, c := range rep.StatusStreams {
		if c.Streams != cfg.StatusStreams[i] || c.Held < int64(c.Streams) || c.RSSMB <= 0 || c.Goroutines <= 0 ||
			c.Missed != 0 || c.PerStream.Count != uint64(c.Streams*cfg.Changes) || c.LastStream.Count != uint64(cfg.Changes) || c.LastStream.MaxMs <= 0 || c.FanOutMs <= 0 || c.FanOutAloneMs <= 0 {
			t.Errorf("status stream row %+v: want %d streams held, each seeing all %d changes, RSS and goroutines", c, cfg.StatusStreams[i], cfg.Changes)
		}
	}

	rt := rep.RedisRoundTrips
	if rt == nil || rt.PerStatusRequest == nil {
		t.Fatal("no Redis round-trip figures")
	}
	if *rt.PerStatusRequest != 0 {
		t.Errorf("Redis round trips per status request = %v, want 0 (served from memory)", *rt.PerStatusRequest)
	}
	if rt.PerVisitorMessageRequest <= 0 || rt.PerAgentReplyBridge <= 0 {
		t.Errorf("round trips %+v: a visitor message and an agent reply must reach Redis", rt)
	}

	var js, table bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not read back: %v", err)
	}
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Widget status", "bare_fiber", "Status propagation", "Relay latency", "Capacity", "Status streams", "Redis round trips"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if testing.Verbose() {
		t.Log("\n" + table.String())
	}
}

// TestFitLine: the extrapolation of the change-to-last-stream p99 is the
// least-squares line through the levels of 1000 streams or more.
func TestFitLine(t *testing.T) {
	row := func(n int, p99 float64) StatusStreamsRow {
		return StatusStreamsRow{Streams: n, LastStream: Latency{P99ms: p99}}
	}
	for _, tc := range []struct {
		name string
		rows []StatusStreamsRow
		want *StreamsFit
	}{
		{"one level", []StatusStreamsRow{row(100, 1), row(1000, 10)}, nil},
		{"exact line", []StatusStreamsRow{row(100, 99), row(1000, 12), row(10000, 102)},
			&StreamsFit{MsPer1000: 10, InterceptMs: 2, At100kP99ms: 1002, FromStreams: 1000, UpToStreams: 10000, LevelsFitted: 2}},
		{"same level twice", []StatusStreamsRow{row(1000, 10), row(1000, 12)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fitLine(tc.rows)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("fitLine = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestTargetModeUsesOnlyHTTP points the command at a running instance: the
// status load and propagation (through the admin API) produce their figures,
// and the agent's status is left as it was.
func TestTargetModeUsesOnlyHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := testConfig(t)
	e, err := startEnv(ctx, &base)
	if err != nil {
		t.Fatal(err)
	}
	defer e.stop()
	in := e.inst[0]
	before := in.watcher.Effective(dutyAgent)

	cfg := Quick()
	cfg.Target, cfg.Property, cfg.Agent, cfg.AdminToken = in.ep.url(), string(propStatus), string(dutyAgent), adminToken
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Status) != len(cfg.Conns) || len(rep.Ratios) != 0 {
		t.Errorf("status rows %d, ratios %d: want %d onduty rows and no bare Fiber", len(rep.Status), len(rep.Ratios), len(cfg.Conns))
	}
	for _, s := range rep.Status {
		if s.Server != "onduty" || s.Requests == 0 || s.Errors != 0 {
			t.Errorf("status row %+v", s)
		}
	}
	if p := rep.Propagation; p == nil || p.Missed != 0 || p.AllStreams.Count != uint64(cfg.Changes) {
		t.Errorf("propagation = %+v, want %d changes seen by every stream", p, cfg.Changes)
	}
	if rep.Relay != nil || rep.Capacity != nil || rep.RedisRoundTrips != nil {
		t.Errorf("a target run measured in-process figures: relay %v capacity %v round trips %v", rep.Relay, rep.Capacity, rep.RedisRoundTrips)
	}
	if err := waitUntil(ctx, 5*time.Second, func() bool { return in.watcher.Effective(dutyAgent) == before }); err != nil {
		t.Errorf("agent left %s, was %s", in.watcher.Effective(dutyAgent), before)
	}
}

// ownGoroutines counts goroutines not started by fasthttp's pools and caches.
func ownGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "created by github.com/valyala/fasthttp") {
			n++
		}
	}
	return n
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{3 * time.Millisecond}, 0.99, 3 * time.Millisecond},
		{"median of 1..100ms", seq(100, time.Millisecond), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100ms", seq(100, time.Millisecond), 0.99, 99 * time.Millisecond},
		{"max never exceeded", seq(100, time.Millisecond), 1, 100 * time.Millisecond},
		{"small exact", []time.Duration{5, 7, 9}, 0.5, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, s := range tt.samples {
				h.Record(s)
			}
			got := h.Quantile(tt.q)
			// Buckets are within 1/128 of the value.
			if diff := got - tt.want; diff < 0 || float64(diff) > float64(tt.want)/128+1 {
				t.Errorf("Quantile(%v) = %v, want %v (up to +0.8%%)", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b Histogram
	for _, d := range seq(50, time.Microsecond) {
		a.Record(d)
	}
	for _, d := range seq(50, time.Millisecond) {
		b.Record(d)
	}
	a.Merge(&b)
	if a.Count() != 100 || a.Max() != 50*time.Millisecond {
		t.Fatalf("merged count %d max %v, want 100 and 50ms", a.Count(), a.Max())
	}
	if q := a.Quantile(0.25); q > 50*time.Microsecond {
		t.Errorf("p25 = %v, want within the microsecond half", q)
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * unit
	}
	return out
}

func TestMarkers(t *testing.T) {
	tests := []struct {
		text      string
		kind      byte
		run, seq  int
		wantFound bool
	}{
		{"load " + marker('m', 3, 41), 'm', 3, 41, true},
		{"<b>Visitor 1 · #abc</b>\nload #m12.0#", 'm', 12, 0, true},
		{`{"text":"reply #r2.7#"}`, 'r', 2, 7, true},
		{"reply #r2.7#", 'm', 0, 0, false},
		{"#m#", 'm', 0, 0, false},
		{"#mx.1#", 'm', 0, 0, false},
		{"no marker", 'm', 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			run, seq, ok := findMarker(tt.text, tt.kind)
			if ok != tt.wantFound || run != tt.run || seq != tt.seq {
				t.Errorf("findMarker = %d, %d, %v; want %d, %d, %v", run, seq, ok, tt.run, tt.seq, tt.wantFound)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad conns", func(c *Config) { c.Conns = []int{0} }, "conns"},
		{"bad rate", func(c *Config) { c.Rates = []int{-1} }, "rates"},
		{"bad phase", func(c *Config) { c.Only = []string{"nope"} }, "unknown phase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.change(&c)
			err := c.Validate()
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
