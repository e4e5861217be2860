package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/onduty/onduty/internal/loadtest"
)

// runLoadtest runs `onduty loadtest`: it measures a deployment (--target) or,
// by default, two onduty instances it starts on 127.0.0.1, prints a table
// and writes the figures as JSON (--json).
func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if os.Getenv(loadtest.HolderEnv) == "1" { // started by the capacity phase below
		return loadtest.Hold(ctx, os.Stdin, stdout)
	}
	d := loadtest.Defaults()
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "measure a running deployment at this base URL (http://host:8080): status load and propagation only")
	property := fs.String("property", "demo", "the target's property (with --target)")
	adminToken := fs.String("admin-token", "", "the target's admin token, for propagation (with --target; default $ONDUTY_ADMIN_TOKEN)")
	agent := fs.String("agent", "", "the target's agent whose status propagation toggles online/offline (with --target)")
	redisURL := fs.String("redis-url", "", `Redis of the in-process run (default redis://127.0.0.1:6379/15 if it answers, else embedded; "embedded" forces it)`)
	quick := fs.Bool("quick", false, "tiny numbers: every figure in seconds (flags given still apply)")
	duration := fs.Duration("duration", d.Duration, "status load duration at each connection count")
	conns := fs.String("conns", joinInts(d.Conns), "status load connection counts")
	streams := fs.Int("streams", d.Streams, "status streams for propagation")
	changes := fs.Int("changes", d.Changes, "status changes timed by propagation")
	rates := fs.String("rates", joinInts(d.Rates), "relay rates through the bridge, messages per second")
	tgRates := fs.String("telegram-rates", joinInts(d.TelegramRates), "relay rates through the Telegram adapter, messages per second")
	relayDur := fs.Duration("relay-duration", d.RelayDuration, "how long each relay rate is sent (bridge path)")
	tgDur := fs.Duration("telegram-duration", d.TelegramDuration, "how long each relay rate is sent through the Telegram adapter")
	relayAgents := fs.Int("relay-agents", d.RelayAgents, "agents owning the relay chats, per path")
	capacity := fs.String("capacity", joinInts(d.Capacity), "visitor streams held open, in steps")
	statusStreams := fs.String("status-streams", joinInts(d.StatusStreams), "status streams held open, in steps (as many as the open-file limit allows)")
	streamHolders := fs.Int("stream-holders", d.StreamHolders, "child processes holding the status streams' client ends")
	sourceAddrs := fs.String("source-addrs", "127.0.0.2-9", "local addresses the status streams are opened from: a list, or 127.0.0.A-B")
	only := fs.String("only", "", "run only these phases: "+strings.Join(loadtest.Phases, ",")+"; and "+loadtest.PhaseCPU+", which runs only when named")
	cpuRate := fs.Int("cpu-rate", d.CPURate, "visitor messages per second of the cpu phase")
	cpuDur := fs.Duration("cpu-duration", d.CPUDuration, "how long the cpu phase sends")
	serveProfile := fs.String("serve-cpuprofile", "", "the cpu phase's serve process writes its CPU profile to this file")
	serveBinary := fs.String("serve-binary", "", "the onduty binary the cpu phase starts (default: this one), e.g. an older build to compare")
	pollEvery := fs.Duration("bridge-poll-every", 0, "the bridges' safety poll for missed outbox and timer wake-ups (default: the bridge's own, as serve runs)")
	jsonFile := fs.String("json", "", "write the figures as JSON to this file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile at the largest capacity step to this file (the largest status-stream step with --only streams)")
	logLevel := fs.String("log-level", "error", "level of the onduty components' logs on stderr (debug, info, warn, error)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}

	cfg := d
	if *quick {
		cfg = loadtest.Quick()
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		switch f.Name {
		case "duration":
			cfg.Duration = *duration
		case "conns":
			cfg.Conns, err = parseInts("conns", *conns)
		case "streams":
			cfg.Streams = *streams
		case "changes":
			cfg.Changes = *changes
		case "rates":
			cfg.Rates, err = parseInts("rates", *rates)
		case "telegram-rates":
			cfg.TelegramRates, err = parseInts("telegram-rates", *tgRates)
		case "relay-duration":
			cfg.RelayDuration = *relayDur
		case "telegram-duration":
			cfg.TelegramDuration = *tgDur
		case "relay-agents":
			cfg.RelayAgents = *relayAgents
		case "cpu-rate":
			cfg.CPURate = *cpuRate
		case "cpu-duration":
			cfg.CPUDuration = *cpuDur
		case "capacity":
			cfg.Capacity, err = parseInts("capacity", *capacity)
		case "status-streams":
			cfg.StatusStreams, err = parseInts("status-streams", *statusStreams)
		case "stream-holders":
			cfg.StreamHolders = *streamHolders
		case "source-addrs":
			cfg.SourceAddrs, err = parseAddrs(*sourceAddrs)
		}
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	cfg.Target, cfg.Property, cfg.Agent, cfg.RedisURL = *target, *property, *agent, *redisURL
	cfg.AdminToken = *adminToken
	if cfg.AdminToken == "" {
		cfg.AdminToken = os.Getenv("ONDUTY_ADMIN_TOKEN")
	}
	cfg.BridgePollEvery = *pollEvery
	if exe, err := os.Executable(); err == nil {
		cfg.HolderCommand = []string{exe, "loadtest"}
		cfg.ServeCommand = []string{exe}
	}
	cfg.ServeCPUProfile = *serveProfile
	if *serveBinary != "" {
		cfg.ServeCommand = []string{*serveBinary}
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Progress = stderr
	cfg.Log = newLogger(stderr, *logLevel)
	if err := cfg.Validate(); err != nil {
		return err
	}

	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.MemProfile = f
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	start := time.Now()
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *jsonFile != "" {
		f, err := os.Create(*jsonFile)
		if err != nil {
			return err
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "loadtest: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

func parseInts(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is not a number", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseAddrs reads "127.0.0.2,127.0.0.3" or "127.0.0.2-9" (the last
// number's range).
func parseAddrs(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		dot := strings.LastIndexByte(f, '.')
		lo, hi, isRange := strings.Cut(f[dot+1:], "-")
		if !isRange {
			out = append(out, f)
			continue
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if dot < 0 || err1 != nil || err2 != nil || a > b || b > 255 {
			return nil, fmt.Errorf("--source-addrs: %q is not a range like 127.0.0.2-9", f)
		}
		for i := a; i <= b; i++ {
			out = append(out, f[:dot+1]+strconv.Itoa(i))
		}
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// startCPUProfile writes a CPU profile to file (none when file is empty)
// until stop is called.
func startCPUProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
