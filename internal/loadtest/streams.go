package loadtest

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// statusClients hold and follow status streams: in child processes when a
// holder command is given, else in this process.
type statusClients interface {
	open(ctx context.Context, ep endpoint, path string, n int, local []string) (int, error)
	arm(target string) error
	collect(wait time.Duration) ([]int64, error)
	// cpu is the CPU time the client process used so far (0: in this process).
	cpu() time.Duration
	// pause stops (true) or continues (false) the client process; false
	// when the clients are in this process.
	pause(stop bool) bool
	close()
}

type localFollower struct{ f follower }

func (l *localFollower) open(ctx context.Context, ep endpoint, path string, n int, local []string) (int, error) {
	return l.f.open(ctx, ep, path, n, local)
}
func (l *localFollower) arm(target string) error { l.f.arm(target); return nil }
func (l *localFollower) collect(wait time.Duration) ([]int64, error) {
	return l.f.collect(wait), nil
}
func (l *localFollower) close()             { l.f.close() }
func (l *localFollower) cpu() time.Duration { return 0 }
func (l *localFollower) pause(bool) bool    { return false }

type childFollower struct{ h *childHolder }

func (c *childFollower) open(_ context.Context, ep endpoint, path string, n int, local []string) (int, error) {
	a, err := c.h.ask(holdRequest{Op: "status", Addr: ep.addr, Host: ep.host, Paths: []string{path}, Count: n, Local: local})
	return a.Held, err
}
func (c *childFollower) arm(target string) error {
	_, err := c.h.ask(holdRequest{Op: "arm", Target: target})
	return err
}
func (c *childFollower) collect(wait time.Duration) ([]int64, error) {
	a, err := c.h.ask(holdRequest{Op: "collect", WaitMS: wait.Milliseconds()})
	return a.Arrivals, err
}
func (c *childFollower) close()             { c.h.close() }
func (c *childFollower) cpu() time.Duration { return procCPU(c.h.cmd.Process.Pid) }
func (c *childFollower) pause(stop bool) bool {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	return c.h.cmd.Process.Signal(sig) == nil
}

// procCPU is the user and system CPU time of process pid so far, from
// /proc/pid/stat (clock ticks of 10ms); 0 where it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanOuts reads the servers' metrics.StatusFanOut: total seconds, count.
func fanOuts() (float64, uint64) {
	var m dto.Metric
	if metrics.StatusFanOut.Write(&m) != nil {
		return 0, 0
	}
	return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
}

// changeWait bounds how long a change is waited for at each stream.
const changeWait = 30 * time.Second

// statusStreams holds status streams on instance A at each level of
// cfg.StatusStreams, their client ends spread over cfg.StreamHolders child
// processes and the source addresses cfg.SourceAddrs; at each level it
// reads what they cost the server process, then times cfg.Changes changes
// of the widget status from the store's SetStatus call to each stream's
// event and to the last stream's.
func (e *env) statusStreams(ctx context.Context, cfg *Config, rep *Report) error {
	levels := append([]int(nil), cfg.StatusStreams...)
	top := 0
	for _, n := range levels {
		top = max(top, n)
	}
	perStream := 2
	var clients []statusClients
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	if len(cfg.HolderCommand) > 0 {
		for range cfg.StreamHolders {
			h, err := startChildHolder(cfg.HolderCommand)
			if err != nil {
				return err
			}
			clients = append(clients, &childFollower{h})
		}
		perStream = 1
	} else {
		clients = append(clients, &localFollower{})
	}
	// Each client process dials from its own share of the source addresses.
	locals := make([][]string, len(clients))
	for i, a := range cfg.SourceAddrs {
		locals[i%len(clients)] = append(locals[i%len(clients)], a)
	}
	var limit uint64
	levels, top, limit, rep.StatusStreamsLimit = fitLevels(levels, top, perStream)
	rep.StatusStreamsFiles = int(limit)
	if top == 0 {
		return nil
	}
	in := e.inst[0]
	path := "/v1/properties/" + string(propStatus) + "/status/stream"
	snap, _ := in.watcher.Snapshot(propStatus)
	if snap == nil {
		return fmt.Errorf("loadtest: no status of %s", propStatus)
	}
	cur := widgetStatus(string(snap.Body))
	dctx := withOrigin(ctx, originDriver)
	base := readMemory()
	baseOpen := in.server.OpenStreams()
	opened := 0
	var err error
	for _, level := range levels {
		cfg.progress("status streams: holding %d", level)
		t0 := time.Now()
		add := level - opened
		if err := parallel(ctx, len(clients), len(clients), func(i int) error {
			n := add / len(clients)
			if i < add%len(clients) {
				n++
			}
			_, err := clients[i].open(ctx, in.ep, path, n, locals[i])
			return err
		}); err != nil {
			return err
		}
		took := time.Since(t0)
		opened = level
		if err := waitUntil(ctx, 30*time.Second, func() bool { return in.server.OpenStreams()-baseOpen >= int64(level) }); err != nil {
			return fmt.Errorf("loadtest: server holds %d of %d status streams: %w", in.server.OpenStreams()-baseOpen, level, err)
		}
		m := readMemory()
		if level == top && cfg.MemProfile != nil && !cfg.runs(PhaseCapacity) {
			if err := pprof.Lookup("heap").WriteTo(cfg.MemProfile, 0); err != nil {
				return fmt.Errorf("loadtest: heap profile: %w", err)
			}
		}
		n := float64(level)
		row := StatusStreamsRow{
			Streams: level, Held: in.server.OpenStreams() - baseOpen,
			RSSMB:           round2(float64(m.rss) / (1 << 20)),
			RSSPerStreamKB:  round2((float64(m.rss) - float64(base.rss)) / n / 1024),
			HeapPerStreamKB: round2((float64(m.heap) - float64(base.heap)) / n / 1024),
			Goroutines:      m.goroutines, GoroutinesPerStream: round2(float64(m.goroutines-base.goroutines) / n),
			OpenedPerSecond: round2(float64(add) / took.Seconds()),
			Changes:         cfg.Changes,
		}
		cfg.progress("status streams: %d changes at %d", cfg.Changes, level)
		var each, last Histogram
		cpu0, kids0 := selfCPU(), time.Duration(0)
		for _, c := range clients {
			kids0 += c.cpu()
		}
		fanSum0, fanN0 := fanOuts()
		for range cfg.Changes {
			next := "online"
			if cur == "online" {
				next = "offline"
			}
			for _, c := range clients {
				if err := c.arm(next); err != nil {
					return err
				}
			}
			start := time.Now()
			if _, err := in.store.SetStatus(dctx, dutyAgent, presence.Status(next)); err != nil {
				return fmt.Errorf("loadtest: change status: %w", err)
			}
			var lastAt int64
			missed := 0
			for _, c := range clients {
				arr, err := c.collect(changeWait)
				if err != nil {
					return err
				}
				for _, at := range arr {
					if at == 0 {
						missed++
						continue
					}
					each.Record(time.Duration(at - start.UnixNano()))
					lastAt = max(lastAt, at)
				}
			}
			if missed == level {
				return fmt.Errorf("loadtest: no status stream saw the widget status become %s", next)
			}
			row.Missed += missed
			last.Record(time.Duration(lastAt - start.UnixNano()))
			cur = next
		}
		writes := float64(level * cfg.Changes)
		row.ServerCPUPerStreamUs = round2(float64(selfCPU()-cpu0) / 1e3 / writes)
		kids := time.Duration(0)
		for _, c := range clients {
			kids += c.cpu()
		}
		if kids > 0 {
			row.ClientCPUPerStreamUs = round2(float64(kids-kids0) / 1e3 / writes)
		}
		if fanSum, fanN := fanOuts(); fanN > fanN0 {
			row.FanOutMs = round2((fanSum - fanSum0) / float64(fanN-fanN0) * 1000)
		}
		row.PerStream, row.LastStream = each.Summary(), last.Summary()
		if row.FanOutAloneMs, cur, err = e.fanOutAlone(ctx, cfg, clients, cur); err != nil {
			return err
		}
		rep.StatusStreams = append(rep.StatusStreams, row)
	}
	rep.StatusStreamsFit = fitLine(rep.StatusStreams)
	return nil
}

// fanOutAlone times cfg.Changes more changes with the client processes
// stopped (SIGSTOP), so that the server's fan-out has the CPUs to itself
// (the events wait in the socket buffers), and returns its mean time in ms
// (0 when the clients are in this process) and the widget status it left.
// The clients are continued after each change and must all get it.
func (e *env) fanOutAlone(ctx context.Context, cfg *Config, clients []statusClients, cur string) (float64, string, error) {
	if _, ok := clients[0].(*childFollower); !ok {
		return 0, cur, nil
	}
	in := e.inst[0]
	dctx := withOrigin(ctx, originDriver)
	var total float64
	for range cfg.Changes {
		next := "online"
		if cur == "online" {
			next = "offline"
		}
		for _, c := range clients {
			if err := c.arm(next); err != nil {
				return 0, cur, err
			}
		}
		for _, c := range clients {
			c.pause(true)
		}
		sum0, n0 := fanOuts()
		_, err := in.store.SetStatus(dctx, dutyAgent, presence.Status(next))
		if err == nil {
			err = waitUntil(ctx, changeWait, func() bool { _, n := fanOuts(); return n > n0 })
		}
		sum1, _ := fanOuts()
		for _, c := range clients {
			c.pause(false)
		}
		if err != nil {
			return 0, cur, fmt.Errorf("loadtest: change with the clients stopped: %w", err)
		}
		total += sum1 - sum0
		for _, c := range clients {
			arr, err := c.collect(changeWait)
			if err != nil {
				return 0, cur, err
			}
			for _, at := range arr {
				if at == 0 {
					return 0, cur, fmt.Errorf("loadtest: a status stream missed a change made with the clients stopped")
				}
			}
		}
		cur = next
	}
	return round2(total / float64(cfg.Changes) * 1000), cur, nil
}

// fitLine fits p99 until the last stream against the number of streams
// (least squares over the levels of 1000 streams or more) and extrapolates
// it to 100,000; nil with fewer than two such levels.
func fitLine(rows []StatusStreamsRow) *StreamsFit {
	var xs, ys []float64
	for _, r := range rows {
		if r.Streams >= 1000 {
			xs = append(xs, float64(r.Streams))
			ys = append(ys, r.LastStream.P99ms)
		}
	}
	if len(xs) < 2 {
		return nil
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(xs))
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return nil
	}
	slope := sxy / sxx
	icept := my - slope*mx
	return &StreamsFit{
		MsPer1000:    round2(slope * 1000),
		InterceptMs:  round2(icept),
		At100kP99ms:  round2(icept + slope*100000),
		FromStreams:  int(xs[0]),
		UpToStreams:  int(xs[len(xs)-1]),
		LevelsFitted: len(xs),
	}
}
