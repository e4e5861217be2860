package loadtest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"
)

// Phases a run may be limited to (Config.Only).
const (
	PhaseStatus      = "status"
	PhasePropagation = "propagation"
	PhaseRelay       = "relay"
	PhaseCapacity    = "capacity"
	PhaseStreams     = "streams"
	// PhaseCPU runs only when asked for (Only): it starts a separate
	// `onduty serve` process (ServeCommand) and reads its CPU time.
	PhaseCPU = "cpu"
)

// Phases lists every phase in the order they run.
var Phases = []string{PhaseStatus, PhasePropagation, PhaseRelay, PhaseCapacity, PhaseStreams}

// Config says what to measure and how hard. The zero value of a field means
// its default, given in its comment (see Defaults and Quick).
type Config struct {
	// Target is a running deployment's base URL (http://host:8080). Empty: start
	// everything in this process on 127.0.0.1. Against a target only the
	// status load and propagation run, over HTTP.
	Target string
	// Property is the target's property to load. Ignored in-process.
	Property string
	// AdminToken and Agent let propagation change the Agent's status on the
	// target through the admin API (online and offline, alternately).
	// Without them propagation is skipped on a target. Choose an agent whose
	// status decides the property's widget status.
	AdminToken, Agent string
	// RedisURL is the Redis of the in-process run. Empty: redis://127.0.0.1:6379/15
	// if it answers, else an embedded one; "embedded" forces the embedded one.
	// Keys get a unique prefix and are deleted at the end.
	RedisURL string

	// Conns are the connection counts of the status load. Default 64, 256, 1024.
	Conns []int
	// Duration is how long each status load runs (after a warm-up of a
	// quarter of it, at most 1s). Default 5s.
	Duration time.Duration
	// Streams is how many status streams propagation opens. Default 1000.
	Streams int
	// Changes is how many status changes propagation times. Default 10.
	Changes int
	// Rates are the relay rates, messages per second. Default 100, 500.
	Rates []int
	// TelegramRates are the relay rates through the Telegram adapter. Default
	// 20 (under Telegram's 30 messages/s per bot, so never paced), 100, 500.
	TelegramRates []int
	// RelayDuration is how long each relay rate is sent. Default 2s.
	RelayDuration time.Duration
	// TelegramDuration is how long each rate is sent through the Telegram
	// adapter, which paces sends under Telegram's limits (30 messages/s per
	// bot), so what is sent faster waits in the outbox. Default 1s.
	TelegramDuration time.Duration
	// RelayAgents is how many agents own the relay chats, per path. Default 64.
	RelayAgents int
	// Capacity are the held visitor stream counts. Default 1000, 10000.
	Capacity []int
	// StatusStreams are the held status stream counts of the status-stream
	// capacity phase, as far as the server process's RLIMIT_NOFILE allows
	// (the largest that fits is measured too). Default 1000, 10000, 100000.
	StatusStreams []int
	// StreamHolders is how many child processes hold the client ends of the
	// status streams (with HolderCommand). Default 2.
	StreamHolders int
	// SourceAddrs are the local addresses the status streams are opened
	// from, shared out among the holders (one address and port range
	// serves about 28,000 connections to one server port). Default
	// 127.0.0.2 to 127.0.0.9; empty after defaults: the system's choice.
	SourceAddrs []string
	// BridgePollEvery is the bridges' bridge.Config.PollEvery (the safety
	// poll for work whose pub/sub wake-up was missed). Zero: the bridge's
	// default, as onduty serve runs it.
	BridgePollEvery time.Duration
	// Only limits the run to these phases (PhaseStatus…). Empty: all
	// but PhaseCPU.
	Only []string
	// CPURate and CPUDuration are the steady visitor message rate of the
	// CPU phase and how long it is sent. Default 20 msg/s for 30s.
	CPURate     int
	CPUDuration time.Duration
	// ServeCommand runs onduty (the CPU phase appends "serve --config
	// FILE"). Nil: the CPU phase reports no figure.
	ServeCommand []string
	// ServeCPUProfile, when set, has the CPU phase's serve process write
	// its CPU profile to this file.
	ServeCPUProfile string

	// HolderCommand starts a stream holder process for the capacity phase
	// (a program that calls Hold when HolderEnv is set, e.g. this one). Nil:
	// both ends of every held stream are in this process, counted in its
	// memory and limited together by its RLIMIT_NOFILE.
	HolderCommand []string
	// MemProfile, when set, receives a heap profile at the largest capacity level.
	MemProfile io.Writer
	// Progress receives a line as each measurement starts. Nil: silent.
	Progress io.Writer
	// Log receives the onduty components' logs. Nil: discarded.
	Log *slog.Logger
}

// Defaults are the figures docs/PERFORMANCE.md reports (about 2 minutes).
func Defaults() Config {
	return Config{
		Conns: []int{64, 256, 1024}, Duration: 5 * time.Second,
		Streams: 1000, Changes: 10,
		Rates: []int{100, 500}, TelegramRates: []int{20, 100, 500}, RelayDuration: 2 * time.Second, TelegramDuration: time.Second, RelayAgents: 64,
		Capacity:      []int{1000, 10000},
		StatusStreams: []int{1000, 10000, 100000}, StreamHolders: 2, SourceAddrs: loopbackAddrs(2, 9),
		CPURate: 20, CPUDuration: 30 * time.Second,
	}
}

// loopbackAddrs is 127.0.0.from to 127.0.0.to.
func loopbackAddrs(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("127.0.0.%d", i))
	}
	return out
}

// Quick is a tiny run that produces every figure in seconds (tests, smoke).
func Quick() Config {
	return Config{
		Conns: []int{2, 8, 32}, Duration: 200 * time.Millisecond,
		Streams: 20, Changes: 3,
		Rates: []int{20, 50}, TelegramRates: []int{20, 50}, RelayDuration: 400 * time.Millisecond, TelegramDuration: 400 * time.Millisecond, RelayAgents: 8,
		Capacity:      []int{20, 100},
		StatusStreams: []int{20, 60}, StreamHolders: 2, SourceAddrs: loopbackAddrs(2, 3),
		CPURate: 20, CPUDuration: 2 * time.Second,
	}
}

func (c *Config) applyDefaults() {
	d := Defaults()
	if len(c.Conns) == 0 {
		c.Conns = d.Conns
	}
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
	if c.Streams <= 0 {
		c.Streams = d.Streams
	}
	if c.Changes <= 0 {
		c.Changes = d.Changes
	}
	if len(c.Rates) == 0 {
		c.Rates = d.Rates
	}
	if len(c.TelegramRates) == 0 {
		c.TelegramRates = d.TelegramRates
	}
	if c.RelayDuration <= 0 {
		c.RelayDuration = d.RelayDuration
	}
	if c.TelegramDuration <= 0 {
		c.TelegramDuration = d.TelegramDuration
	}
	if c.RelayAgents <= 0 {
		c.RelayAgents = d.RelayAgents
	}
	if c.CPURate <= 0 {
		c.CPURate = d.CPURate
	}
	if c.CPUDuration <= 0 {
		c.CPUDuration = d.CPUDuration
	}
	if len(c.Capacity) == 0 {
		c.Capacity = d.Capacity
	}
	if len(c.StatusStreams) == 0 {
		c.StatusStreams = d.StatusStreams
	}
	if c.StreamHolders <= 0 {
		c.StreamHolders = d.StreamHolders
	}
	if c.SourceAddrs == nil {
		c.SourceAddrs = d.SourceAddrs
	}
	if c.Property == "" {
		c.Property = "demo"
	}
}

// Validate reports every bad setting.
func (c *Config) Validate() error {
	for _, n := range c.Conns {
		if n <= 0 || n > 20000 {
			return fmt.Errorf("loadtest: conns: %d is not in 1..20000", n)
		}
	}
	for _, r := range append(slices.Clone(c.Rates), c.TelegramRates...) {
		if r <= 0 || r > 100000 {
			return fmt.Errorf("loadtest: rates: %d is not in 1..100000", r)
		}
	}
	for _, n := range c.Capacity {
		if n <= 0 || n > 100000 {
			return fmt.Errorf("loadtest: capacity: %d is not in 1..100000", n)
		}
	}
	for _, n := range c.StatusStreams {
		if n <= 0 || n > 1000000 {
			return fmt.Errorf("loadtest: status streams: %d is not in 1..1000000", n)
		}
	}
	if c.StreamHolders > 64 {
		return fmt.Errorf("loadtest: stream holders: %d is over 64", c.StreamHolders)
	}
	for _, a := range c.SourceAddrs {
		if net.ParseIP(a) == nil {
			return fmt.Errorf("loadtest: source addrs: %q is not an IP address", a)
		}
	}
	for _, p := range c.Only {
		if !slices.Contains(Phases, p) && p != PhaseCPU {
			return fmt.Errorf("loadtest: only: unknown phase %q (want %v or %s)", p, Phases, PhaseCPU)
		}
	}
	if c.CPURate < 1 || c.CPURate > 1000 {
		return fmt.Errorf("loadtest: cpu rate: %d is not in 1..1000", c.CPURate)
	}
	if c.CPUDuration < time.Second {
		return fmt.Errorf("loadtest: cpu duration: %s is under 1s", c.CPUDuration)
	}
	return nil
}

func (c *Config) runs(phase string) bool {
	if phase == PhaseCPU {
		return slices.Contains(c.Only, phase)
	}
	return len(c.Only) == 0 || slices.Contains(c.Only, phase)
}

func (c *Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

func (c *Config) componentLog() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}
