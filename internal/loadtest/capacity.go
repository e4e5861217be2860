package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/onduty/onduty/bridge"
)

// raiseNoFile lifts RLIMIT_NOFILE to at least want (up to the hard limit,
// or beyond it when allowed) and returns the limit in force.
func raiseNoFile(want uint64) uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	if l.Cur >= want {
		return l.Cur
	}
	if want > l.Max {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want
		}
	}
	up := syscall.Rlimit{Cur: min(want, l.Max), Max: l.Max}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
		return up.Cur
	}
	return l.Cur
}

// fitLevels raises this process's RLIMIT_NOFILE for top streams of
// perStream descriptors each (plus what is open and a margin) and keeps the
// levels that fit, adding the largest that does when some do not; why is
// then set. It returns the levels, their top, and the limit in force.
func fitLevels(levels []int, top, perStream int) (kept []int, fitTop int, limit uint64, why string) {
	const margin = 512
	inUse := openFiles()
	limit = raiseNoFile(uint64(perStream*top + inUse + margin))
	fit := (int(limit) - inUse - margin) / perStream
	if fit >= top {
		return levels, top, limit, ""
	}
	why = fmt.Sprintf("RLIMIT_NOFILE is %d (the hard limit; raising it was refused) and %d are in use: at most %d streams fit (%d descriptors each in this process)", limit, inUse, max(fit, 0), perStream)
	for _, n := range levels {
		if n <= fit {
			kept = append(kept, n)
		}
	}
	if fit > 0 && (len(kept) == 0 || kept[len(kept)-1] < fit) {
		kept = append(kept, fit)
	}
	return kept, max(fit, 0), limit, why
}

// openFiles counts this process's open descriptors.
func openFiles() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 64
	}
	return len(es)
}

// memory is a reading of the process's memory after a full collection.
type memory struct {
	rss        uint64 // bytes
	heap       uint64 // heap and stacks in use
	goroutines int
}

func readMemory() memory {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{rss: rss(), heap: ms.HeapInuse + ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// rss is VmRSS from /proc/self/status, in bytes (0 where there is none).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// capacity opens visitor event streams on instance A, each for its own
// chat, up to each level, and reads what they cost. The streams stay open
// until the run ends.
func (e *env) capacity(ctx context.Context, cfg *Config, rep *Report) error {
	levels := append([]int(nil), cfg.Capacity...)
	top := 0
	for _, n := range levels {
		top = max(top, n)
	}
	// The server ends of the streams live in this process, and the client
	// ends too unless a holder process takes them.
	perStream := 2
	var holder streamHolder = &localHolder{}
	if len(cfg.HolderCommand) > 0 {
		h, err := startChildHolder(cfg.HolderCommand)
		if err != nil {
			return err
		}
		holder, perStream = h, 1
	}
	defer holder.close()
	levels, top, _, rep.CapacityLimit = fitLevels(levels, top, perStream)
	if top == 0 {
		return nil
	}
	cfg.progress("capacity: starting %d chats", top)
	in := e.inst[0]
	dctx := withOrigin(ctx, originDriver)
	type chat struct {
		id    bridge.ChatID
		token string
	}
	chats := make([]chat, top)
	if err := parallel(ctx, top, 32, func(i int) error {
		c, token, err := in.bridge.StartChat(dctx, propCap, bridge.Visitor{}, "hello")
		if err != nil {
			return fmt.Errorf("loadtest: start chat: %w", err)
		}
		chats[i] = chat{c.ID, token}
		return nil
	}); err != nil {
		return err
	}
	base := readMemory()
	baseOpen := in.server.OpenStreams()
	opened := 0
	for _, level := range levels {
		cfg.progress("capacity: holding %d visitor streams", level)
		t0 := time.Now()
		from := opened
		var paths, headers []string
		for _, c := range chats[from:level] {
			paths = append(paths, "/v1/chats/"+string(c.id)+"/events")
			headers = append(headers, "Authorization: Bearer "+c.token+"\r\n")
		}
		if _, err := holder.open(ctx, in.ep, paths, headers); err != nil {
			return err
		}
		took := time.Since(t0)
		opened = level
		if err := waitUntil(ctx, 10*time.Second, func() bool { return in.server.OpenStreams()-baseOpen >= int64(level) }); err != nil {
			return fmt.Errorf("loadtest: server holds %d of %d streams: %w", in.server.OpenStreams()-baseOpen, level, err)
		}
		m := readMemory()
		n := float64(level)
		rep.Capacity = append(rep.Capacity, CapacityRow{
			Streams: level, Held: in.server.OpenStreams() - baseOpen,
			RSSMB:               round2(float64(m.rss) / (1 << 20)),
			RSSPerStreamKB:      round2((float64(m.rss) - float64(base.rss)) / n / 1024),
			HeapPerStreamKB:     round2((float64(m.heap) - float64(base.heap)) / n / 1024),
			GoroutinesPerStream: round2(float64(m.goroutines-base.goroutines) / n),
			OpenedPerSecond:     round2(float64(level-from) / took.Seconds()),
		})
		if level == top && cfg.MemProfile != nil {
			if err := pprof.Lookup("heap").WriteTo(cfg.MemProfile, 0); err != nil {
				return fmt.Errorf("loadtest: heap profile: %w", err)
			}
		}
	}
	return nil
}
