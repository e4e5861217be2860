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
	RelayCPU    *RelayCPU          `json:"relay_cpu,omitempty"`
	Capacity    []CapacityRow      `json:"capacity,omitempty"`
	// CapacityLimit says what stopped the capacity phase short, if anything.
	CapacityLimit string `json:"capacity_limit,omitempty"`
	// StatusStreams is the status-stream capacity phase, one row per level.
	StatusStreams []StatusStreamsRow `json:"status_streams,omitempty"`
	// StatusStreamsLimit says what stopped that phase short, if anything;
	// StatusStreamsFiles is the server process's RLIMIT_NOFILE in force.
	StatusStreamsLimit string `json:"status_streams_limit,omitempty"`
	StatusStreamsFiles int    `json:"status_streams_files,omitempty"`
	// StatusStreamsFit extrapolates the change-to-last-stream p99.
	StatusStreamsFit *StreamsFit `json:"status_streams_fit,omitempty"`
	RedisRoundTrips  *RoundTrips `json:"redis_round_trips,omitempty"`
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
	if n := len(r.StatusStreams); n > 0 {
		top := r.StatusStreams[n-1]
		add(fmt.Sprintf("status streams: RSS KB per stream at %d", top.Streams), "<= 4", top.RSSPerStreamKB, top.RSSPerStreamKB <= 4)
		for _, s := range r.StatusStreams {
			if s.Streams == 10000 {
				add("status streams: change to last of 10000, p99 ms", "<= 100", s.LastStream.P99ms, s.LastStream.P99ms <= 100 && s.Missed == 0)
			}
		}
		add(fmt.Sprintf("status streams: change to last of %d, p99 ms", top.Streams), "<= 1000", top.LastStream.P99ms, top.LastStream.P99ms <= 1000 && top.Missed == 0)
	}
	if f := r.StatusStreamsFit; f != nil {
		add("status streams: change to last of 100000, p99 ms, extrapolated", "<= 1000", f.At100kP99ms, f.At100kP99ms <= 1000)
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

// StatusStreamsRow is status streams held on one instance, their client
// ends in other processes: what they cost the server process and how long
// a change of the widget status takes to reach them.
type StatusStreamsRow struct {
	Streams int   `json:"streams"`
	Held    int64 `json:"held"` // the server's count of open streams
	// RSSMB is the resident memory of the server process (both instances,
	// the bare Fiber server, the fake Telegram, an embedded Redis if used),
	// after a full collection.
	RSSMB float64 `json:"rss_mb"`
	// RSSPerStreamKB is the growth of RSS from no streams, per stream.
	RSSPerStreamKB float64 `json:"rss_per_stream_kb"`
	// HeapPerStreamKB is Go heap and stacks in use, per stream.
	HeapPerStreamKB     float64 `json:"heap_per_stream_kb"`
	Goroutines          int     `json:"goroutines"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream"`
	OpenedPerSecond     float64 `json:"opened_per_second"`
	Changes             int     `json:"changes"`
	// PerStream is each stream's delay from the change (the SetStatus call)
	// to its event; LastStream, per change, the delay until the last one.
	PerStream  Latency `json:"per_stream"`
	LastStream Latency `json:"last_stream"`
	// Missed counts stream events that did not arrive within 30s.
	Missed int `json:"missed"`
	// FanOutMs is the server's mean time to write one change to all the
	// streams (metrics.StatusFanOut): its part of LastStream.
	FanOutMs float64 `json:"fanout_ms"`
	// FanOutAloneMs is the same with the client processes stopped while
	// the server writes (the events wait in the socket buffers): the
	// server's fan-out with the CPUs to itself.
	FanOutAloneMs float64 `json:"fanout_alone_ms"`
	// ServerCPUPerStreamUs and ClientCPUPerStreamUs are the CPU time the
	// server process and the client processes used during the changes, per
	// stream and change: what the two cores are shared out between.
	ServerCPUPerStreamUs float64 `json:"server_cpu_per_stream_us"`
	ClientCPUPerStreamUs float64 `json:"client_cpu_per_stream_us"`
}

// StreamsFit is a least-squares line through the change-to-last-stream
// p99 of the levels of 1000 streams or more, and where it reaches at
// 100,000 streams (same design, more streams: no more than that).
type StreamsFit struct {
	MsPer1000    float64 `json:"ms_per_1000_streams"`
	InterceptMs  float64 `json:"intercept_ms"`
	At100kP99ms  float64 `json:"at_100k_p99_ms"`
	FromStreams  int     `json:"from_streams"`
	UpToStreams  int     `json:"up_to_streams"`
	LevelsFitted int     `json:"levels_fitted"`
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
	if c := r.RelayCPU; c != nil {
		fmt.Fprintf(w, "\nRelay CPU  one `onduty serve` process, %d chats accepted on Telegram (fake Bot API), visitor messages over HTTP; CPU from /proc\n", cpuChats)
		if c.Note != "" {
			fmt.Fprintf(w, "  not measured: %s\n", c.Note)
		} else {
			fmt.Fprintln(tw, "msg/s\tseconds\tmessages\tarrived\tCPU ms\tms per message\tidle ms per s\tnet ms per message\t")
			fmt.Fprintf(tw, "%d\t%.0f\t%d\t%d\t%.0f\t%.3f\t%.2f\t%.3f\t\n", c.Rate, c.Seconds, c.Messages, c.Arrived, c.CPUms, c.MsPerMessage, c.IdleMsPerSecond, c.NetMsPerMessage)
			tw.Flush()
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
	if len(r.StatusStreams) > 0 {
		fmt.Fprintln(w, "\nStatus streams  held on one instance, clients in other processes; latency from the change to each stream's event and to the last one's")
		fmt.Fprintln(tw, "streams\theld\tRSS MB\tRSS KB/stream\theap+stacks KB/stream\tgoroutines\tgoroutines/stream\topened/s\tchanges\teach p50 ms\teach p99 ms\tlast p50 ms\tlast p99 ms\tlast max ms\tmissed\tserver fan-out ms\tfan-out, clients stopped, ms\tserver CPU µs/stream\tclient CPU µs/stream\t")
		for _, c := range r.StatusStreams {
			fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.2f\t%.2f\t%d\t%.3f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", c.Streams, c.Held, c.RSSMB, c.RSSPerStreamKB, c.HeapPerStreamKB, c.Goroutines, c.GoroutinesPerStream, c.OpenedPerSecond, c.Changes,
				c.PerStream.P50ms, c.PerStream.P99ms, c.LastStream.P50ms, c.LastStream.P99ms, c.LastStream.MaxMs, c.Missed, c.FanOutMs, c.FanOutAloneMs, c.ServerCPUPerStreamUs, c.ClientCPUPerStreamUs)
		}
		tw.Flush()
		if f := r.StatusStreamsFit; f != nil {
			fmt.Fprintf(w, "last-stream p99 fitted over %d levels (%d to %d streams): %.2f ms + %.2f ms per 1000 streams; at 100,000: %.0f ms\n", f.LevelsFitted, f.FromStreams, f.UpToStreams, f.InterceptMs, f.MsPer1000, f.At100kP99ms)
		}
		if r.StatusStreamsLimit != "" {
			fmt.Fprintln(w, "limit:", r.StatusStreamsLimit)
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
