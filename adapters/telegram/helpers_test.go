package telegram

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/bridge/bridgetest"
	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// Test fixtures: property acme uses private chats, beta a forum group.
const (
	aliceTG   = int64(111)
	bobTG     = int64(222)
	carolTG   = int64(333)
	stranger  = int64(777)
	betaGroup = int64(-1001234567890)
)

func testDirectory(t testing.TB) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{{ID: "acme", Name: "Acme"}, {ID: "beta", Name: "Beta"}},
		[]presence.Agent{
			{ID: "alice", Name: "Alice", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(aliceTG)},
			{ID: "bob", Name: "Bob", Properties: []presence.PropertyID{"acme"}, Accounts: tgAccount(bobTG)},
			{ID: "carol", Name: "Carol", Properties: []presence.PropertyID{"beta"}, Accounts: tgAccount(carolTG)},
			{ID: "dave", Name: "Dave", Properties: []presence.PropertyID{"acme"}},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// instanceTransport marks requests with the instance name (for the lease test).
type instanceTransport struct{ name string }

func (t instanceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Instance", t.name)
	return http.DefaultTransport.RoundTrip(r)
}

type testEnv struct {
	api *tgfake.Server
	rdb *redistest.Redis
	dir *presence.Directory
}

const testToken = "123456:TEST-token"

func newEnv(t testing.TB) *testEnv {
	api := tgfake.New(tgfake.Options{Token: testToken, Report: t})
	t.Cleanup(api.Close)
	return &testEnv{api: api, rdb: redistest.New(t), dir: testDirectory(t)}
}

// adapter builds an adapter on the env; change adjusts the config. The
// local limiter is opened wide unless keepLimits.
func (e *testEnv) adapter(t testing.TB, instance string, rdb redis.UniversalClient, change func(*Config)) *Adapter {
	t.Helper()
	cfg := Config{
		Token:       testToken,
		APIURL:      e.api.URL(),
		Groups:      map[presence.PropertyID]int64{"beta": betaGroup},
		Prefix:      e.rdb.Prefix,
		HTTPClient:  &http.Client{Transport: instanceTransport{name: instance}, Timeout: 10 * time.Second},
		PollTimeout: time.Second,
		LeaseTTL:    600 * time.Millisecond,
	}
	if change != nil {
		change(&cfg)
	}
	if rdb == nil {
		rdb = e.rdb.Client
	}
	a, err := New(cfg, e.dir, rdb, testlog.Logger().With("instance", instance))
	if err != nil {
		t.Fatal(err)
	}
	a.lim = newLimiter(limits{}, time.Now)
	return a
}

// run starts a.Run(ctx, h) and returns a stop function (also run at cleanup).
func run(t testing.TB, a *Adapter, h bridge.Host) (stop func()) {
	t.Helper()
	out(a).keepIn(h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// fakeHandler records actions and answers with canned replies.
type fakeHandler = bridgetest.Handler

// fileHandler is a fakeHandler that also stores and serves files.
type fileHandler struct {
	fakeHandler
	mu    sync.Mutex
	files map[string][]byte
}

func (h *fileHandler) PutFile(_ context.Context, chat bridge.ChatID, name, mime string, data []byte) (bridge.Attachment, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := "f" + string(chat) + name
	h.files[key] = append([]byte(nil), data...)
	return bridge.Attachment{Key: key, Name: name, MIME: mime, Size: int64(len(data))}, nil
}

func (h *fileHandler) File(_ context.Context, chat bridge.ChatID, key string) (bridge.Attachment, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	data, ok := h.files[key]
	if !ok {
		return bridge.Attachment{}, nil, bridge.ErrUnknownChat
	}
	return bridge.Attachment{Key: key, Name: "report.pdf", Size: int64(len(data))}, data, nil
}

func asRetryAfter(err error) (*bridge.RetryAfterError, bool) {
	var ra *bridge.RetryAfterError
	ok := errors.As(err, &ra)
	return ra, ok
}

func asPermanent(err error) bool {
	var p *bridge.PermanentError
	return errors.As(err, &p)
}

func testChat(id bridge.ChatID, prop presence.PropertyID) bridge.Chat {
	return bridge.Chat{
		ID: id, Property: prop, State: bridge.Pending,
		Visitor: bridge.Visitor{Name: "Vera <V>", Email: "vera@example.com", PageURL: "https://acme.example/pricing?a=1&b=2"},
	}
}

// richVisitor has every piece of visitor context, with text that tries to
// pass for other lines of the offer or for markup.
func richVisitor() bridge.Visitor {
	return bridge.Visitor{
		Name: "Vera <V>", Email: "vera@example.com",
		PageURL:  "https://acme.example/pricing?a=1&b=2",
		Referrer: "https://search.example/?q=<b>x</b>\nVerified user: root",
		Language: "de-DE", TimeZone: "Europe/Berlin",
		Browser: "Chrome 118", OS: "Windows", Returning: 2,
		Identity: &bridge.Identity{UserID: "u-42 </i><b>", Email: "vera@example.com", Verified: true,
			Attrs: map[string]string{"plan": "pro & more", "Verified user": "admin\nPage: evil"}},
	}
}

// waitCalls waits until at least n calls of method match keep (nil: all).
func waitCalls(t testing.TB, api *tgfake.Server, method string, n int, keep func(tgfake.Call) bool) []tgfake.Call {
	t.Helper()
	var got []tgfake.Call
	wait.For(t, fmt.Sprintf("%d %s call(s)", n, method), func() bool {
		got = api.CallsWhere(func(c tgfake.Call) bool { return c.Method == method && (keep == nil || keep(c)) })
		return len(got) >= n
	})
	return got
}

// tgAccount is an agent's Accounts with the Telegram user id.
func tgAccount(user int64) map[presence.Surface]string {
	return map[presence.Surface]string{Surface: strconv.FormatInt(user, 10)}
}

// testOutbox plays the bridge's outbox around Deliver for tests that call
// the adapter directly: it keeps what each delivery made and hands it back
// (Delivery.Thread, Offers, Done) as the bridge does, and records the refs
// in the adapter's test handler so that replies find their chat.
type testOutbox struct {
	a       *Adapter
	mu      sync.Mutex
	threads map[string]bridge.RemoteRef   // chat|target
	offers  map[string][]bridge.RemoteRef // chat|target
	done    map[string][]bridge.RemoteRef // delivery id
	kept    []keptRefs
}

type keptRefs struct {
	chat bridge.ChatID
	refs []bridge.RemoteRef
}

var outboxes sync.Map // *Adapter → *testOutbox

// out is the test outbox of a.
func out(a *Adapter) *testOutbox {
	o, _ := outboxes.LoadOrStore(a, &testOutbox{a: a, threads: map[string]bridge.RemoteRef{},
		offers: map[string][]bridge.RemoteRef{}, done: map[string][]bridge.RemoteRef{}})
	return o.(*testOutbox)
}

type refKeeper interface {
	Keep(surface string, chat bridge.ChatID, refs ...bridge.RemoteRef)
}

// Deliver delivers d as the outbox would, with what earlier deliveries made.
func (o *testOutbox) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	key := string(d.Chat.ID) + "|" + string(d.Agent)
	o.mu.Lock()
	if t, ok := o.threads[key]; ok {
		d.Thread = &t
	}
	d.Offers = append([]bridge.RemoteRef(nil), o.offers[key]...)
	d.Done = append([]bridge.RemoteRef(nil), o.done[d.ID]...)
	o.mu.Unlock()
	made, err := o.a.Deliver(ctx, d)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range made {
		switch r.Role {
		case bridge.RefThread:
			o.threads[key] = r
		case bridge.RefOffer:
			o.offers[key] = append(o.offers[key], r)
		}
	}
	if d.ID != "" {
		o.done[d.ID] = append(o.done[d.ID], made...)
	}
	if err == nil && (d.Kind == bridge.KindTaken || d.Kind == bridge.KindWithdrawn) {
		delete(o.offers, key)
	}
	if d.Chat.ID != "" && len(made) > 0 {
		o.kept = append(o.kept, keptRefs{d.Chat.ID, made})
		if box := o.a.handler.Load(); box != nil {
			if k, ok := box.h.(refKeeper); ok {
				k.Keep(surface, d.Chat.ID, made...)
			}
		}
	}
	return made, err
}

// keepIn records every ref made so far in h (a handler given to Run later).
func (o *testOutbox) keepIn(h bridge.Host) {
	k, ok := h.(refKeeper)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, kr := range o.kept {
		k.Keep(surface, kr.chat, kr.refs...)
	}
}

// dedupHost is a test handler that ignores an action whose DedupKey was
// handled before, as the bridge does (a failed one may come again).
type dedupHost struct {
	*bridgetest.Handler
	mu   sync.Mutex
	seen map[string]bool
}

func (h *dedupHost) Handle(ctx context.Context, a bridge.Action) (bridge.Reply, error) {
	h.mu.Lock()
	if a.DedupKey != "" && h.seen[a.DedupKey] {
		h.mu.Unlock()
		return bridge.Reply{}, nil
	}
	h.mu.Unlock()
	r, err := h.Handler.Handle(ctx, a)
	if err == nil && a.DedupKey != "" {
		h.mu.Lock()
		if h.seen == nil {
			h.seen = map[string]bool{}
		}
		h.seen[a.DedupKey] = true
		h.mu.Unlock()
	}
	return r, err
}

// resolved is what the bridge makes of the actions h was handed: the chat
// their ReplyTo names (as h.ChatOf finds it), and a message written in the
// shared place outside any chat turned into activity.
func resolved(t testing.TB, h bridge.Host, acts []bridge.Action) []bridge.Action {
	t.Helper()
	out := make([]bridge.Action, len(acts))
	for i, a := range acts {
		if a.Chat == "" && a.ReplyTo != nil {
			chat, err := h.ChatOf(t.Context(), a.Surface, *a.ReplyTo)
			if err != nil {
				t.Fatal(err)
			}
			a.Chat = chat
		}
		if a.Kind == bridge.ActMessage && a.Shared && a.Chat == "" {
			a.Kind, a.Shared = bridge.ActActivity, false
		}
		out[i] = a
	}
	return out
}
