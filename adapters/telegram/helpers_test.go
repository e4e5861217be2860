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
