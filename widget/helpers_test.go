package widget

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/testlog"
	"github.com/onduty/onduty/presence"
)

// testClock is a settable clock for rate-limit windows.
type testClock struct{ ns atomic.Int64 }

func newClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2026, 11, 23, 12, 0, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is one server with its presence, a fake bridge and a Redis.
type env struct {
	t       testing.TB
	redis   *redistest.Redis
	dir     *presence.Directory
	store   *presence.Store
	watcher *presence.Watcher
	chats   *fakeChats
	clock   *testClock
	srv     *Server
	cfg     Config
	log     *slog.Logger
}

const (
	acmeOrigin  = "https://acme.example"
	adminToken  = "s3cret-admin"
	propDemo    = presence.PropertyID("demo")
	propAcme    = presence.PropertyID("acme")
	propQuiet   = presence.PropertyID("quiet")
	agentAlice  = presence.AgentID("alice")
	agentBob    = presence.AgentID("bob")
	agentCarol  = presence.AgentID("carol")
	testTimeout = 10 * time.Second
)

func testDirectory(t testing.TB) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{
			{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeForm},
			{ID: propAcme, Name: "Acme", OfflineMode: presence.ModeMessenger, Greetings: map[presence.Status]string{presence.Online: "We're here!"}},
			{ID: propQuiet, Name: "Quiet", OfflineMode: presence.ModeHidden},
		},
		[]presence.Agent{
			{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo, propAcme}, Condition: presence.Always},
			{ID: agentBob, Name: "Bob", Properties: []presence.PropertyID{propAcme}},
			{ID: agentCarol, Name: "Carol", Properties: []presence.PropertyID{propQuiet}},
		})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// newEnv builds a server; mod may change its config. The watcher is loaded
// once (not stale) but not running; call env.runWatcher for live changes.
func newEnv(t testing.TB, mod ...func(*Config)) *env {
	t.Helper()
	return newEnvDir(t, testDirectory(t), mod...)
}

// newEnvDir is newEnv with another directory.
func newEnvDir(t testing.TB, dir *presence.Directory, mod ...func(*Config)) *env {
	t.Helper()
	r := redistest.New(t)
	e := &env{t: t, redis: r, dir: dir, clock: newClock(), log: testlog.Logger()}
	e.store = presence.NewStore(r.Client, e.dir, presence.Keys{Prefix: r.Prefix}, nil)
	e.watcher = presence.NewWatcher(e.store, e.log)
	e.watcher.Tick = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := e.watcher.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e.chats = newFakeChats(propDemo, propAcme, propQuiet)
	e.chats.presence = e.store
	e.cfg = Config{
		Listen:     "127.0.0.1:0",
		AdminToken: adminToken,
		Properties: map[presence.PropertyID]PropertyConfig{propAcme: {AllowedOrigins: []string{acmeOrigin}}},
		Prefix:     r.Prefix,
		Now:        e.clock.Now,
		Heartbeat:  50 * time.Millisecond,
	}
	for _, m := range mod {
		m(&e.cfg)
	}
	e.srv = New(e.cfg, e.watcher, e.store, e.chats, r.Client, e.log)
	return e
}

// runWatcher runs the watcher until the test ends.
func (e *env) runWatcher() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.watcher.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// serve runs the server on a real listener until the test ends; it returns
// the base URL.
func (e *env) serve() string {
	ln := listen(e.t)
	e.t.Cleanup(serveOn(e.t, e.srv, ln))
	return "http://" + ln.Addr().String()
}

// serveOn runs srv on ln; the returned func stops it and waits.
func serveOn(t testing.TB, srv *Server, ln net.Listener) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(testTimeout):
				t.Errorf("server did not stop")
			}
		})
	}
}

func (e *env) setStatus(id presence.AgentID, st presence.Status) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := e.store.SetStatus(ctx, id, st); err != nil {
		e.t.Fatal(err)
	}
}

// reload makes the (non-running) watcher take what Redis holds now.
func (e *env) reload() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := e.watcher.Load(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// resp is a response read in full.
type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// errCode is the code of an error body ("" if it is not one).
func (r resp) errCode() string {
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(r.body, &b) != nil {
		return ""
	}
	return b.Error.Code
}

// do sends a request through app.Test. Headers come in pairs.
func (e *env) do(method, path string, body any, headers ...string) resp {
	e.t.Helper()
	return doApp(e.t, e.srv, method, path, body, headers...)
}

func doApp(t testing.TB, srv *Server, method, path string, body any, headers ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := srv.App().Test(req, 10000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{code: res.StatusCode, header: res.Header, body: b}
}

// startChat starts a chat through the API and returns its id and token.
func (e *env) startChat(p presence.PropertyID, msg string) (string, string) {
	e.t.Helper()
	r := e.do("POST", "/v1/properties/"+string(p)+"/chats", map[string]string{"message": msg, "name": "Vic"})
	if r.code != http.StatusCreated {
		e.t.Fatalf("start chat: %d %s", r.code, r.body)
	}
	var out struct{ ChatID, VisitorToken string }
	var raw map[string]string
	r.json(e.t, &raw)
	out.ChatID, out.VisitorToken = raw["chat_id"], raw["visitor_token"]
	if out.ChatID == "" || out.VisitorToken == "" {
		e.t.Fatalf("start chat: %s", r.body)
	}
	return out.ChatID, out.VisitorToken
}

// downRedis is a client to a port nothing listens on.
func downRedis(t testing.TB) redis.UniversalClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, Protocol: 2})
	t.Cleanup(func() { c.Close() })
	return c
}

// lockedBuf is a log sink tests can read.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
