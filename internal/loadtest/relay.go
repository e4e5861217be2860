package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/onduty/onduty/adapters/telegram"
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/presence"
)

// relayRun times n tagged messages from sending to arrival.
type relayRun struct {
	id      int
	kind    byte
	n       int
	chat    []int          // chat index of message seq
	sent    []atomic.Int64 // unix ns when sent; 0 = not sent (failed)
	got     []atomic.Int64 // unix ns on arrival
	arrived atomic.Int64
	failed  atomic.Int64
}

func (r *relayRun) expected() int64 { return int64(r.n) - r.failed.Load() }

// summary is the latency of what arrived, and the rate it arrived at
// (from the first sending to the last arrival).
func (r *relayRun) summary() (Histogram, int, float64) {
	var h Histogram
	n := 0
	var first, last int64
	for i := range r.n {
		s, g := r.sent[i].Load(), r.got[i].Load()
		if s != 0 && g != 0 {
			h.Record(time.Duration(g - s))
			n++
			if first == 0 || s < first {
				first = s
			}
			last = max(last, g)
		}
	}
	rate := 0.0
	if last > first {
		rate = float64(n) / time.Duration(last-first).Seconds()
	}
	return h, n, rate
}

// relayBook matches arrivals (at the fake Telegram, the probe adapter, a
// visitor's stream) to the runs that sent them.
type relayBook struct {
	mu   sync.Mutex
	runs map[int]*relayRun
	next int

	// tgMsg remembers, per relay chat index, the Telegram message id of the
	// last visitor message delivered there: agents reply to it.
	tgMu  sync.Mutex
	tgMsg map[int]int
}

func newRelayBook() *relayBook {
	return &relayBook{runs: map[int]*relayRun{}, tgMsg: map[int]int{}}
}

func (b *relayBook) start(kind byte, chats []int) *relayRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	r := &relayRun{id: b.next, kind: kind, n: len(chats), chat: chats,
		sent: make([]atomic.Int64, len(chats)), got: make([]atomic.Int64, len(chats))}
	b.runs[r.id] = r
	return r
}

// arrive records the first arrival of a marker found in text.
func (b *relayBook) arrive(kind byte, text string, at time.Time) (*relayRun, int, bool) {
	id, seq, ok := findMarker(text, kind)
	if !ok {
		return nil, 0, false
	}
	b.mu.Lock()
	r := b.runs[id]
	b.mu.Unlock()
	if r == nil || r.kind != kind || seq < 0 || seq >= r.n {
		return nil, 0, false
	}
	if r.got[seq].CompareAndSwap(0, at.UnixNano()) {
		r.arrived.Add(1)
	}
	return r, seq, true
}

// Visitor messages that queued up behind pacing arrive merged, one per
// line: each line's marker is an arrival.

func (b *relayBook) telegramSent(at time.Time, _ int64, msgID int, text string) {
	for _, line := range strings.Split(text, "\n") {
		if r, seq, ok := b.arrive('m', line, at); ok {
			b.tgMu.Lock()
			b.tgMsg[r.chat[seq]] = msgID
			b.tgMu.Unlock()
		}
	}
}

func (b *relayBook) probeDelivered(at time.Time, d bridge.Delivery) {
	if d.Kind == bridge.KindMessage && d.Message != nil {
		for _, line := range strings.Split(d.Message.Text, "\n") {
			b.arrive('m', line, at)
		}
	}
}

func (b *relayBook) lastTelegramMessage(chat int) (int, bool) {
	b.tgMu.Lock()
	defer b.tgMu.Unlock()
	id, ok := b.tgMsg[chat]
	return id, ok
}

// relayChat is a chat owned by an agent, with the visitor's stream open.
type relayChat struct {
	id     bridge.ChatID
	token  string
	agent  presence.Agent
	inst   int // instance the visitor talks to
	stream *sseStream
}

// setupRelayChats starts n chats of property p, has each accepted by one of
// agents (made invisible first, so that no offer is sent anywhere), and
// opens each visitor's event stream, alternating instances.
func (e *env) setupRelayChats(ctx context.Context, p presence.PropertyID, agents []presence.Agent, n int) ([]*relayChat, error) {
	dctx := withOrigin(ctx, originDriver)
	for _, a := range agents {
		if _, err := e.inst[0].store.SetStatus(dctx, a.ID, presence.Invisible); err != nil {
			return nil, fmt.Errorf("loadtest: set status: %w", err)
		}
	}
	for _, in := range e.inst {
		if err := waitUntil(ctx, 10*time.Second, func() bool {
			for _, a := range agents {
				if in.watcher.Effective(a.ID) != presence.Invisible {
					return false
				}
			}
			return true
		}); err != nil {
			return nil, fmt.Errorf("loadtest: agents not invisible on %s: %w", in.name, err)
		}
	}
	chats := make([]*relayChat, n)
	err := parallel(ctx, n, 32, func(i int) error {
		in := e.inst[i%2]
		c, token, err := in.bridge.StartChat(dctx, p, bridge.Visitor{Name: fmt.Sprintf("Visitor %d", i)}, "hello")
		if err != nil {
			return fmt.Errorf("loadtest: start chat: %w", err)
		}
		a := agents[i%len(agents)]
		if _, err := in.bridge.Handle(dctx, bridge.Action{Kind: bridge.ActAccept, Surface: "loadtest", Agent: a.ID, Chat: c.ID}); err != nil {
			return fmt.Errorf("loadtest: accept: %w", err)
		}
		got, err := in.bridge.AuthVisitor(dctx, c.ID, token)
		if err != nil {
			return fmt.Errorf("loadtest: check chat: %w", err)
		}
		if got.Owner != a.ID {
			return fmt.Errorf("loadtest: chat %s: owner is %q, not %q", c.ID, got.Owner, a.ID)
		}
		s, err := openSSE(ctx, in.ep, "/v1/chats/"+string(c.ID)+"/events?token="+token, "")
		if err != nil {
			return err
		}
		if err := s.waitFor("status", 10*time.Second); err != nil {
			s.Close()
			return err
		}
		chats[i] = &relayChat{id: c.ID, token: token, agent: a, inst: i % 2, stream: s}
		return nil
	})
	if err != nil {
		for _, c := range chats {
			if c != nil {
				c.stream.Close()
			}
		}
		return nil, err
	}
	return chats, nil
}

// readReplies reads a visitor stream until it fails, recording agent replies.
func (e *env) readReplies(c *relayChat) {
	for {
		ev, data, err := c.stream.next()
		if err != nil {
			return
		}
		switch ev {
		case string(bridge.EventMessage):
			e.book.arrive('r', data, time.Now())
		case "status":
			e.statusEvents.Add(1)
		}
	}
}

// openLoop calls send(seq) for n messages at rate per second, from a pool
// of workers, and returns the achieved sending rate.
func openLoop(ctx context.Context, n, rate int, send func(seq int)) float64 {
	jobs := make(chan int, n)
	var wg sync.WaitGroup
	for range min(n, 128) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range jobs {
				send(seq)
			}
		}()
	}
	t0 := time.Now()
	every := time.Second / time.Duration(rate)
	for seq := range n {
		if d := time.Until(t0.Add(time.Duration(seq) * every)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- seq
	}
	close(jobs)
	wg.Wait()
	el := time.Since(t0)
	if el <= 0 {
		return 0
	}
	return float64(n) / el.Seconds()
}

// postMessages sends n visitor messages at rate over chats[0:rate] (one
// chat per message a second), through the instance each visitor talks to.
func (e *env) postMessages(ctx context.Context, chats []*relayChat, rate, n int) (*relayRun, float64) {
	used := min(rate, len(chats))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i % used
	}
	run := e.book.start('m', idx)
	clients := [2]*fasthttp.HostClient{}
	for i, in := range e.inst {
		clients[i] = &fasthttp.HostClient{Addr: in.ep.addr, MaxConns: 512, ReadTimeout: 30 * time.Second, WriteTimeout: 10 * time.Second}
		defer clients[i].CloseIdleConnections()
	}
	achieved := openLoop(ctx, n, rate, func(seq int) {
		c := chats[idx[seq]]
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + e.inst[c.inst].ep.host + "/v1/chats/" + string(c.id) + "/messages")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.SetBodyString(`{"text":"load ` + marker('m', run.id, seq) + `"}`)
		run.sent[seq].Store(time.Now().UnixNano())
		if err := clients[c.inst].Do(req, resp); err != nil || resp.StatusCode() != 202 {
			run.sent[seq].Store(0)
			run.failed.Add(1)
		}
	})
	return run, achieved
}

// waitArrivals waits until every message sent in run arrived, or d passed.
func waitArrivals(ctx context.Context, run *relayRun, d time.Duration) {
	waitUntil(ctx, d, func() bool { return run.arrived.Load() >= run.expected() })
}

// relay measures both directions on both paths. It needs max(Rates) chats
// per path.
func (e *env) relay(ctx context.Context, cfg *Config, rep *Report) error {
	maxRate, maxTG := slices.Max(cfg.Rates), slices.Max(cfg.TelegramRates)
	cfg.progress("relay: starting %d + %d chats, accepted by %d agents per path", maxRate, maxTG, cfg.RelayAgents)
	probeChats, err := e.setupRelayChats(ctx, propProbe, e.prAgents, maxRate)
	if err != nil {
		return err
	}
	tgChats, err := e.setupRelayChats(ctx, propTG, e.tgAgents, maxTG)
	if err != nil {
		return err
	}
	var readers sync.WaitGroup
	defer func() {
		for _, c := range append(probeChats, tgChats...) {
			c.stream.Close()
		}
		readers.Wait()
	}()
	for _, c := range append(probeChats, tgChats...) {
		readers.Add(1)
		go func() { defer readers.Done(); e.readReplies(c) }()
	}

	// What the instances do on their own, to subtract from background counts.
	idle := e.roundTrips()
	t0 := time.Now()
	sleepCtx(ctx, time.Second)
	bgRate := float64(e.roundTrips().sub(idle)[originBackground]) / time.Since(t0).Seconds()
	rt := rep.roundTrips()
	rt.BackgroundPerSecond = round2(bgRate)

	bgPer := func(before rtSnapshot, from time.Time, n int) float64 {
		d := e.roundTrips().sub(before)
		return round2((float64(d[originBackground]) - bgRate*time.Since(from).Seconds()) / float64(max(n, 1)))
	}

	// Visitor → agent, through the probe adapter (the bridge alone).
	for _, rate := range cfg.Rates {
		n := max(1, int(float64(rate)*cfg.RelayDuration.Seconds()))
		cfg.progress("relay: visitor → agent via bridge (probe adapter), %d msg/s × %s", rate, cfg.RelayDuration)
		before, from := e.roundTrips(), time.Now()
		run, achieved := e.postMessages(ctx, probeChats, rate, n)
		waitArrivals(ctx, run, 30*time.Second)
		sleepCtx(ctx, 100*time.Millisecond) // let the outbox remove what it delivered
		h, got, arrival := run.summary()
		rep.Relay = append(rep.Relay, relayRow("bridge", "visitor_to_agent", rate, n, got, int(run.failed.Load()), achieved, arrival, &h))
		d := e.roundTrips().sub(before)
		if rate == cfg.Rates[len(cfg.Rates)-1] {
			rt.PerVisitorMessageRequest = round2(float64(d[originRequest]) / float64(n))
			rt.PerVisitorMessageOutbox = bgPer(before, from, n)
		}
	}
	// Agent → visitor, handed to the bridge directly (what an adapter does).
	for _, rate := range cfg.Rates {
		n := max(1, int(float64(rate)*cfg.RelayDuration.Seconds()))
		cfg.progress("relay: agent → visitor via bridge, %d msg/s × %s", rate, cfg.RelayDuration)
		before, events := e.roundTrips(), e.statusEvents.Load()
		run, achieved := e.sendReplies(ctx, probeChats, rate, n, func(c *relayChat, text string) error {
			in := e.inst[1-c.inst] // the other instance than the visitor's stream
			_, err := in.bridge.Handle(withOrigin(ctx, originReply), bridge.Action{
				Kind: bridge.ActMessage, Surface: "probe", Agent: c.agent.ID, Chat: c.id, Text: text})
			return err
		})
		waitArrivals(ctx, run, 30*time.Second)
		h, got, arrival := run.summary()
		row := relayRow("bridge", "agent_to_visitor", rate, n, got, int(run.failed.Load()), achieved, arrival, &h)
		row.StatusEvents = e.statusEvents.Load() - events
		rep.Relay = append(rep.Relay, row)
		if rate == cfg.Rates[len(cfg.Rates)-1] {
			rt.PerAgentReplyBridge = round2(float64(e.roundTrips().sub(before)[originReply]) / float64(n))
		}
	}
	// Visitor → agent through the Telegram adapter and the fake Bot API.
	for _, rate := range cfg.TelegramRates {
		n := max(1, int(float64(rate)*cfg.TelegramDuration.Seconds()))
		drain := 10*time.Second + time.Duration(n)*time.Second/25
		cfg.progress("relay: visitor → agent via Telegram, %d msg/s × %s (paced at 30/s: up to %s to drain)", rate, cfg.TelegramDuration, drain.Round(time.Second))
		before, from := e.roundTrips(), time.Now()
		run, achieved := e.postMessages(ctx, tgChats, rate, n)
		waitArrivals(ctx, run, drain)
		sleepCtx(ctx, 100*time.Millisecond)
		h, got, arrival := run.summary()
		rep.Relay = append(rep.Relay, relayRow("telegram", "visitor_to_agent", rate, n, got, int(run.failed.Load()), achieved, arrival, &h))
		if rate == cfg.TelegramRates[0] {
			rt.PerVisitorMessageTelegram = bgPer(before, from, n)
		}
	}
	// Agent → visitor: an update from the fake Bot API, polled by the adapter.
	for _, rate := range cfg.TelegramRates {
		n := max(1, int(float64(rate)*cfg.TelegramDuration.Seconds()))
		cfg.progress("relay: agent → visitor via Telegram, %d msg/s × %s", rate, cfg.TelegramDuration)
		before, from, events := e.roundTrips(), time.Now(), e.statusEvents.Load()
		run, achieved := e.sendReplies(ctx, tgChats, rate, n, func(c *relayChat, text string) error {
			i := chatIndex(tgChats, c)
			msgID, ok := e.book.lastTelegramMessage(i)
			if !ok {
				return errors.New("no Telegram message to reply to")
			}
			user, err := strconv.ParseInt(c.agent.Account(telegram.Surface), 10, 64)
			if err != nil {
				return fmt.Errorf("agent %s has no Telegram account: %w", c.agent.ID, err)
			}
			e.tg.Push(tgfake.ReplyMessage(user, text, msgID))
			return nil
		})
		waitArrivals(ctx, run, 30*time.Second)
		h, got, arrival := run.summary()
		row := relayRow("telegram", "agent_to_visitor", rate, n, got, int(run.failed.Load()), achieved, arrival, &h)
		row.StatusEvents = e.statusEvents.Load() - events
		rep.Relay = append(rep.Relay, row)
		if rate == cfg.TelegramRates[0] {
			rt.PerAgentReplyTelegram = bgPer(before, from, n)
		}
	}
	return nil
}

// sendReplies sends n agent replies at rate over chats[0:rate] with send.
func (e *env) sendReplies(ctx context.Context, chats []*relayChat, rate, n int, send func(*relayChat, string) error) (*relayRun, float64) {
	used := min(rate, len(chats))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i % used
	}
	run := e.book.start('r', idx)
	achieved := openLoop(ctx, n, rate, func(seq int) {
		run.sent[seq].Store(time.Now().UnixNano())
		if err := send(chats[idx[seq]], "reply "+marker('r', run.id, seq)); err != nil {
			run.sent[seq].Store(0)
			run.failed.Add(1)
		}
	})
	return run, achieved
}

func chatIndex(chats []*relayChat, c *relayChat) int {
	for i, x := range chats {
		if x == c {
			return i
		}
	}
	return -1
}

func relayRow(path, dir string, rate, sent, got, failed int, achieved, arrival float64, h *Histogram) RelayRow {
	return RelayRow{Path: path, Direction: dir, Rate: rate, Sent: sent, Received: got, Failed: failed,
		AchievedRate: round2(achieved), ArrivalRate: round2(arrival), Latency: h.Summary()}
}

// parallel runs f(0..n-1) on at most workers goroutines; the first error
// stops the rest from starting and is returned.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
