package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured. It is what --json writes.
type Report struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Machine Machine   `json:"machine"`
	// Target is "in-process" or the target's URL.
	Target string `json:"target"`
	Redis  string `json:"redis,omitempty"`

	Status      []StatusRow        `json:"status,omitempty"`
	Ratios      []StatusRatio      `json:"status_vs_bare_fiber,omitempty"`
	Propagation *PropagationResult `json:"propagation,omitempty"`
	Relay       []RelayRow         `json:"relay,omitempty"`
	Capacity    []CapacityRow      `json:"capacity,omitempty"`
	// CapacityLimit says what stopped the capacity phase short, if anything.
	CapacityLimit   string      `json:"capacity_limit,omitempty"`
	RedisRoundTrips *RoundTrips `json:"redis_round_trips,omitempty"`
	// Targets compares the figures with the goals of docs/PERFORMANCE.md (reported, never enforced).
	Targets []Target `json:"targets,omitempty"`
}

// Target is one goal and what was measured against it.
type Target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
}

// checkTargets fills Targets from the figures there are.
func (r *Report) checkTargets() {
	r.Targets = nil
	add := func(name, goal string, v float64, met bool) {
		r.Targets = append(r.Targets, Target{Name: name, Goal: goal, Measured: v, Met: met})
	}
	for _, x := range r.Ratios {
		if x.Conns == 256 {
			add("status throughput / bare Fiber, 256 conns", ">= 0.8", x.Throughput, x.Throughput >= 0.8)
			add("status p99 / bare Fiber p99, 256 conns", "<= 1.25", x.P99, x.P99 <= 1.25)
		}
	}
	if p := r.Propagation; p != nil {
		add("propagation p99 ms (until every stream)", "<= 100", p.AllStreams.P99ms, p.AllStreams.P99ms <= 100 && p.Missed == 0)
	}
	for _, x := range r.Relay {
		if x.Rate == 500 {
			add(fmt.Sprintf("relay p99 ms, %s %s, 500 msg/s", x.Path, x.Direction), "<= 20", x.Latency.P99ms, x.Latency.P99ms <= 20 && x.Received == x.Sent)
		}
	}
	for _, c := range r.Capacity {
		if c.Streams == 10000 {
			add("RSS MB with 10000 visitor streams", "<= 300", c.RSSMB, c.RSSMB <= 300)
		}
	}
}

// Machine is where the figures were taken.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu,omitempty"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// StatusRow is one status load: GET /v1/properties/{p}/status on keep-alive
// connections, one request in flight on each.
type StatusRow struct {
	// Server is "onduty" or "bare_fiber" (constant JSON, same route).
	Server   string  `json:"server"`
	Conns    int     `json:"conns"`
	RPS      float64 `json:"rps"`
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	Latency  Latency `json:"latency"`
}

// StatusRatio compares onduty with bare Fiber at one connection count.
type StatusRatio struct {
	Conns int `json:"conns"`
	// Throughput is onduty's requests/s over bare Fiber's (target ≥ 0.8 at 256).
	Throughput float64 `json:"throughput"`
	// P99 is onduty's p99 over bare Fiber's (target ≤ 1.25 at 256).
	P99 float64 `json:"p99"`
}

// PropagationResult times status changes reaching open status streams.
type PropagationResult struct {
	Streams int `json:"streams"`
	Changes int `json:"changes"`
	// PerStream is each stream's delay from the change to its event.
	PerStream Latency `json:"per_stream"`
	// AllStreams is, per change, the delay until the last stream had it.
	AllStreams Latency `json:"all_streams"`
	// Missed counts stream events that did not arrive within 10s.
	Missed int `json:"missed"`
}

// RelayRow is one relay run: messages sent at a rate, each to another chat.
type RelayRow struct {
	// Path is "bridge" (an in-process adapter that records Deliver: onduty
	// alone) or "telegram" (the real adapter and a fake Bot API).
	Path string `json:"path"`
	// Direction is "visitor_to_agent" (POST /v1/chats/{c}/messages until the
	// adapter delivers) or "agent_to_visitor" (the agent's reply until the
	// visitor's event stream has it).
	Direction    string  `json:"direction"`
	Rate         int     `json:"rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// ArrivalRate is messages received per second, from the first sending
	// to the last arrival: through Telegram, the pacing shows here.
	ArrivalRate float64 `json:"arrival_rate"`
	Sent        int     `json:"sent"`
	Received    int     `json:"received"`
	Failed      int     `json:"failed"`
	Latency     Latency `json:"latency"`
	// StatusEvents counts the status events all open visitor streams of the
	// property received during an agent_to_visitor run. The widget status
	// never changes there: each one is a repeat, sent because the agent's
	// activity rebuilt the property's snapshot.
	StatusEvents int64 `json:"status_events,omitempty"`
}

// CapacityRow is held visitor event streams on one instance.
type CapacityRow struct {
	Streams int   `json:"streams"`
	Held    int64 `json:"held"` // the server's count of open streams
	// RSSMB is the resident memory of the whole process (both instances,
	// the clients, the fake Telegram, an embedded Redis if used).
	RSSMB float64 `json:"rss_mb"`
	// RSSPerStreamKB is the growth of RSS from no streams, per stream
	// (server and client side).
	RSSPerStreamKB float64 `json:"rss_per_stream_kb"`
	// HeapPerStreamKB is Go heap and stacks in use, per stream.
	HeapPerStreamKB     float64 `json:"heap_per_stream_kb"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream"`
	OpenedPerSecond     float64 `json:"opened_per_second"`
}

// RoundTrips counts Redis round trips (a command, or a whole pipeline).
type RoundTrips struct {
	// PerStatusRequest is in GET /status handlers (target: zero).
	PerStatusRequest *float64 `json:"per_status_request,omitempty"`
	// PerVisitorMessageRequest is in POST /messages handlers.
	PerVisitorMessageRequest float64 `json:"per_visitor_message_request"`
	// PerVisitorMessageOutbox is the outbox's work per message (bridge path),
	// net of what the instances do when idle.
	PerVisitorMessageOutbox float64 `json:"per_visitor_message_outbox"`
	// PerVisitorMessageTelegram is outbox and Telegram adapter work per
	// message (Telegram path), net of idle.
	PerVisitorMessageTelegram float64 `json:"per_visitor_message_telegram"`
	// PerAgentReplyBridge is Bridge.Handle's work for one reply.
	PerAgentReplyBridge float64 `json:"per_agent_reply_bridge"`
	// PerAgentReplyTelegram adds the adapter (update claim), net of idle.
	PerAgentReplyTelegram float64 `json:"per_agent_reply_telegram"`
	// BackgroundPerSecond is what both idle instances do (outbox and timer
	// polling, leases, Telegram polling).
	BackgroundPerSecond float64 `json:"background_per_second"`
}

// roundTrips returns the report's round-trip figures, created on first use.
func (r *Report) roundTrips() *RoundTrips {
	if r.RedisRoundTrips == nil {
		r.RedisRoundTrips = &RoundTrips{}
	}
	return r.RedisRoundTrips
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "onduty loadtest — %s, %d CPUs (GOMAXPROCS %d) %s, %s, target %s", r.Started.UTC().Format(time.RFC3339), r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.CPU, r.Machine.GoVersion, r.Target)
	if r.Redis != "" {
		fmt.Fprintf(w, ", redis %s", r.Redis)
	}
	fmt.Fprintf(w, ", %.0fs\n", r.Seconds)
	if len(r.Status) > 0 {
		fmt.Fprintln(w, "\nWidget status  GET /v1/properties/{p}/status, keep-alive, one request in flight per connection")
		fmt.Fprintln(tw, "server\tconns\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t")
		for _, s := range r.Status {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.1f\t%d\t\n", s.Server, s.Conns, s.RPS, s.Latency.P50ms, s.Latency.P99ms, s.Latency.P999ms, s.Latency.MaxMs, s.Errors)
		}
		tw.Flush()
		if len(r.Ratios) > 0 {
			fmt.Fprintln(tw, "conns\tthroughput onduty/bare\tp99 onduty/bare\t")
			for _, x := range r.Ratios {
				fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t\n", x.Conns, x.Throughput, x.P99)
			}
			tw.Flush()
		}
	}
	if p := r.Propagation; p != nil {
		fmt.Fprintf(w, "\nStatus propagation  %d status streams, %d changes\n", p.Streams, p.Changes)
		fmt.Fprintln(tw, "\tp50 ms\tp99 ms\tmax ms\tsamples\t")
		fmt.Fprintf(tw, "each stream\t%.2f\t%.2f\t%.2f\t%d\t\n", p.PerStream.P50ms, p.PerStream.P99ms, p.PerStream.MaxMs, p.PerStream.Count)
		fmt.Fprintf(tw, "all streams\t%.2f\t%.2f\t%.2f\t%d\t\n", p.AllStreams.P50ms, p.AllStreams.P99ms, p.AllStreams.MaxMs, p.AllStreams.Count)
		tw.Flush()
		if p.Missed > 0 {
			fmt.Fprintf(w, "missed: %d stream events did not arrive within 10s\n", p.Missed)
		}
	}
	if len(r.Relay) > 0 {
		fmt.Fprintln(w, "\nRelay latency  bridge = onduty with an in-process adapter; telegram = real adapter, fake Bot API (paced at Telegram's 30 msg/s per bot)")
		fmt.Fprintln(tw, "path\tdirection\tmsg/s\tachieved\tarrived/s\tsent\treceived\tfailed\tp50 ms\tp99 ms\tmax ms\tstatus events\t")
		for _, x := range r.Relay {
			ev := ""
			if x.Direction == "agent_to_visitor" {
				ev = strconv.FormatInt(x.StatusEvents, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\t%s\t\n", x.Path, x.Direction, x.Rate, x.AchievedRate, x.ArrivalRate, x.Sent, x.Received, x.Failed, x.Latency.P50ms, x.Latency.P99ms, x.Latency.MaxMs, ev)
		}
		fmt.Fprintln(w, "status events: repeats of an unchanged widget status that the visitor streams got during the agents' replies")
		tw.Flush()
	}
	if len(r.Capacity) > 0 {
		fmt.Fprintln(w, "\nCapacity  visitor event streams held open on one instance")
		fmt.Fprintln(tw, "streams\theld\tRSS MB\tRSS KB/stream\theap+stacks KB/stream\tgoroutines/stream\topened/s\t")
		for _, c := range r.Capacity {
			fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t%.0f\t\n", c.Streams, c.Held, c.RSSMB, c.RSSPerStreamKB, c.HeapPerStreamKB, c.GoroutinesPerStream, c.OpenedPerSecond)
		}
		tw.Flush()
		if r.CapacityLimit != "" {
			fmt.Fprintln(w, "limit:", r.CapacityLimit)
		}
	}
	if rt := r.RedisRoundTrips; rt != nil {
		fmt.Fprintln(w, "\nRedis round trips (a command or a pipeline)")
		if rt.PerStatusRequest != nil {
			fmt.Fprintf(tw, "per status request\t%.4f\t\n", *rt.PerStatusRequest)
		}
		fmt.Fprintf(tw, "per visitor message, HTTP handler\t%.2f\t\n", rt.PerVisitorMessageRequest)
		fmt.Fprintf(tw, "per visitor message, outbox (bridge path)\t%.2f\t\n", rt.PerVisitorMessageOutbox)
		fmt.Fprintf(tw, "per visitor message, outbox + Telegram adapter\t%.2f\t\n", rt.PerVisitorMessageTelegram)
		fmt.Fprintf(tw, "per agent reply, bridge\t%.2f\t\n", rt.PerAgentReplyBridge)
		fmt.Fprintf(tw, "per agent reply, Telegram adapter + bridge\t%.2f\t\n", rt.PerAgentReplyTelegram)
		fmt.Fprintf(tw, "idle background, both instances, per second\t%.0f\t\n", rt.BackgroundPerSecond)
		tw.Flush()
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\nTargets (docs/PERFORMANCE.md; reported, never enforced)")
		fmt.Fprintln(tw, "\tgoal\tmeasured\t\t")
		for _, t := range r.Targets {
			met := "not met"
			if t.Met {
				met = "met"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t\n", t.Name, t.Goal, t.Measured, met)
		}
		tw.Flush()
	}
	return nil
}
