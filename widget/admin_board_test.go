package widget

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// boardDirectory is testDirectory with chat-app identities: Alice is on
// Telegram and Slack, Bob on Slack only, Carol on neither.
func boardDirectory(t testing.TB) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{
			{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeForm},
			{ID: propAcme, Name: "Acme", OfflineMode: presence.ModeMessenger},
			{ID: propQuiet, Name: "Quiet", OfflineMode: presence.ModeHidden},
		},
		[]presence.Agent{
			{ID: agentAlice, Name: "Alice", Properties: []presence.PropertyID{propDemo, propAcme}, Condition: presence.Always,
				Accounts: map[presence.Surface]string{"telegram": "111", "slack": "U111"}},
			{ID: agentBob, Name: "Bob", Properties: []presence.PropertyID{propAcme}, Accounts: map[presence.Surface]string{"slack": "U222"}},
			{ID: agentCarol, Name: "Carol", Properties: []presence.PropertyID{propQuiet}},
		},
		"telegram", "slack") // the order configuration lists them in (config.Directory)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var adminBearer = []string{"Authorization", "Bearer " + adminToken}

func TestAdminBoardAuth(t *testing.T) {
	e := newEnvDir(t, boardDirectory(t))
	endpoints := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/admin/properties", nil},
		{"GET", "/v1/admin/properties/acme/chats", nil},
		{"GET", "/v1/admin/properties/acme/events", nil},
		{"GET", "/v1/admin/events", nil},
		{"POST", "/v1/admin/agents/alice/actions", map[string]string{"command": "status"}},
	}

	t.Run("disabled without a token", func(t *testing.T) {
		cfg := e.cfg
		cfg.AdminToken = ""
		srv := New(cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
		for _, ep := range endpoints {
			for _, h := range [][]string{nil, adminBearer, {"Authorization", "Bearer "}} {
				if r := doApp(t, srv, ep.method, ep.path, ep.body, h...); r.code != 404 {
					t.Errorf("%s %s with %v: %d", ep.method, ep.path, h, r.code)
				}
			}
		}
		r := doApp(t, srv, "GET", "/admin", nil)
		if r.code != 404 || !strings.Contains(string(r.body), "The admin API is disabled") || strings.Contains(string(r.body), "admin.js") {
			t.Errorf("/admin: %d %s", r.code, r.body)
		}
		if r := doApp(t, srv, "GET", "/admin.js", nil); r.code != 404 {
			t.Errorf("/admin.js: %d", r.code)
		}
		if len(e.chats.Actions()) != 0 {
			t.Errorf("actions handled while disabled: %+v", e.chats.Actions())
		}
	})

	t.Run("missing or wrong token", func(t *testing.T) {
		for _, ep := range endpoints {
			for _, tc := range []struct {
				headers []string
				code    int
			}{
				{nil, 401},
				{[]string{"Authorization", "Bearer wrong"}, 403},
				{[]string{"Authorization", "Bearer " + adminToken + "x"}, 403},
				{[]string{"Authorization", "Basic " + adminToken}, 401},
			} {
				if r := e.do(ep.method, ep.path, ep.body, tc.headers...); r.code != tc.code {
					t.Errorf("%s %s with %v: %d, want %d", ep.method, ep.path, tc.headers, r.code, tc.code)
				}
			}
		}
		if len(e.chats.Actions()) != 0 {
			t.Errorf("actions handled without the token: %+v", e.chats.Actions())
		}
		// ?token= is not accepted: the token never goes in a URL.
		if r := e.do("GET", "/v1/admin/events?token="+adminToken, nil); r.code != 401 {
			t.Errorf("token in the query: %d", r.code)
		}
	})

	t.Run("the page", func(t *testing.T) {
		r := e.do("GET", "/admin", nil)
		csp := r.header.Get("Content-Security-Policy")
		if r.code != 200 || !strings.Contains(string(r.body), `src="/admin.js"`) || !strings.Contains(csp, "script-src 'self'") || r.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("/admin: %d %v", r.code, r.header)
		}
		r = e.do("GET", "/admin.js", nil)
		if r.code != 200 || !bytes.Equal(r.body, adminPageJS) || !strings.Contains(string(r.body), "sessionStorage") {
			t.Errorf("/admin.js: %d", r.code)
		}
	})
}

func TestAdminBoardAPI(t *testing.T) {
	e := newEnvDir(t, boardDirectory(t))
	e.setStatus(agentAlice, presence.Online)
	e.reload()

	pending, _ := e.startChat(propAcme, "Is anyone there?")
	active, _ := e.startChat(propAcme, "My order is late")
	e.chats.Join(bridge.ChatID(active), agentAlice, "Alice")
	e.chats.Reply(bridge.ChatID(active), agentAlice, "Alice", "Let me check.", false)

	t.Run("properties", func(t *testing.T) {
		r := e.do("GET", "/v1/admin/properties", nil, adminBearer...)
		var out struct {
			Properties []boardProperty `json:"properties"`
		}
		r.json(t, &out)
		if r.code != 200 || len(out.Properties) != 3 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		acme := out.Properties[1]
		if acme.Property != propAcme || acme.Name != "Acme" || acme.Report.Status != presence.Online || acme.Report.Reason != "online: Alice" {
			t.Errorf("acme %+v", acme)
		}
		if got := acme.Surfaces; strings.Join(got[agentAlice], ",") != "telegram,slack" || strings.Join(got[agentBob], ",") != "slack" {
			t.Errorf("surfaces %v", got)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("cache-control %q", r.header.Get("Cache-Control"))
		}
	})

	t.Run("presence explains the widget status", func(t *testing.T) {
		r := e.do("GET", "/v1/admin/properties/acme/presence", nil, adminBearer...)
		var out presence.Report
		r.json(t, &out)
		var extra presenceResponse
		r.json(t, &extra)
		if strings.Join(extra.Surfaces[agentAlice], ",") != "telegram,slack" || len(extra.Surfaces[agentBob]) != 1 {
			t.Errorf("surfaces %v", extra.Surfaces)
		}
		// The same report `onduty status acme` prints (presence.Store.Report).
		want, err := e.store.Report(t.Context(), propAcme)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 200 || out.Status != want.Status || out.Reason != want.Reason || len(out.Agents) != len(want.Agents) {
			t.Fatalf("%d %s, want %+v", r.code, r.body, want)
		}
		for i, a := range out.Agents {
			if a.ID != want.Agents[i].ID || a.Effective != want.Agents[i].Effective || a.Reason != want.Agents[i].Reason {
				t.Errorf("agent %d: %+v, want %+v", i, a, want.Agents[i])
			}
		}
	})

	t.Run("chats", func(t *testing.T) {
		r := e.do("GET", "/v1/admin/properties/acme/chats", nil, adminBearer...)
		var bc bridge.BoardChats
		r.json(t, &bc)
		if r.code != 200 || bc.Property != propAcme || bc.Counts != (bridge.ChatCounts{Pending: 1, Active: 1}) {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if len(bc.Pending) != 1 || string(bc.Pending[0].ID) != pending || bc.Pending[0].Last == nil || bc.Pending[0].Last.Text != "Is anyone there?" {
			t.Errorf("pending %+v", bc.Pending)
		}
		if len(bc.Active) != 1 || string(bc.Active[0].ID) != active || bc.Active[0].Owner != agentAlice || bc.Active[0].Last.Text != "Let me check." {
			t.Errorf("active %+v", bc.Active)
		}
		if r := e.do("GET", "/v1/admin/properties/nope/chats", nil, adminBearer...); r.code != 404 || r.errCode() != "unknown_property" {
			t.Errorf("unknown property: %d %s", r.code, r.body)
		}
		e.chats.SetFail(bridge.ErrUnavailable)
		r = e.do("GET", "/v1/admin/properties/acme/chats", nil, adminBearer...)
		e.chats.SetFail(nil)
		if r.code != 503 || r.errCode() != "unavailable" {
			t.Errorf("storage down: %d %s", r.code, r.body)
		}
	})

	t.Run("actions", func(t *testing.T) {
		long := strings.Repeat("é", bridge.MaxTextRunes+1)
		tests := []struct {
			name, agent string
			body        any
			code        int
			errCode     string
			want        bridge.Action
		}{
			{"command", "alice", map[string]string{"command": "accept"}, 200, "",
				bridge.Action{Kind: bridge.ActCommand, Surface: "admin", Agent: agentAlice, Command: "accept"}},
			{"command with slash, args and chat", "bob", map[string]string{"command": "/transfer", "args": "Alice", "chat_id": active}, 200, "",
				bridge.Action{Kind: bridge.ActCommand, Surface: "admin", Agent: agentBob, Command: "transfer", Args: "Alice", Chat: bridge.ChatID(active)}},
			{"message", "alice", map[string]string{"chat_id": active, "text": "It ships today."}, 200, "",
				bridge.Action{Kind: bridge.ActMessage, Surface: "admin", Agent: agentAlice, Chat: bridge.ChatID(active), Text: "It ships today."}},
			{"message to the current chat", "alice", map[string]string{"text": "Anything else?"}, 200, "",
				bridge.Action{Kind: bridge.ActMessage, Surface: "admin", Agent: agentAlice, Text: "Anything else?"}},
			{"neither", "alice", map[string]string{}, 400, "missing_field", bridge.Action{}},
			{"both", "alice", map[string]string{"command": "accept", "text": "hi"}, 400, "invalid_action", bridge.Action{}},
			{"two words", "alice", map[string]string{"command": "accept now"}, 400, "invalid_command", bridge.Action{}},
			{"blank text", "alice", map[string]string{"text": "   "}, 400, "invalid_text", bridge.Action{}},
			{"text too long", "alice", map[string]string{"text": long}, 400, "text_too_long", bridge.Action{}},
			{"args too long", "alice", map[string]string{"command": "transfer", "args": long}, 400, "text_too_long", bridge.Action{}},
			{"invalid UTF-8", "alice", []byte("{\"text\":\"\xff\xfe\"}"), 400, "invalid_utf8", bridge.Action{}},
			{"malformed", "alice", "{", 400, "malformed_json", bridge.Action{}},
			{"wrong type", "alice", `{"text": 5}`, 400, "invalid_field", bridge.Action{}},
			{"too large", "alice", map[string]string{"text": strings.Repeat("x", MaxBodyBytes)}, 413, "too_large", bridge.Action{}},
			{"bad chat id", "alice", map[string]string{"chat_id": "../x", "text": "hi"}, 404, "unknown_chat", bridge.Action{}},
			{"unknown agent", "zed", map[string]string{"command": "online"}, 404, "unknown_agent", bridge.Action{}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := len(e.chats.Actions())
				r := e.do("POST", "/v1/admin/agents/"+tc.agent+"/actions", tc.body, adminBearer...)
				if r.code != tc.code || r.errCode() != tc.errCode {
					t.Fatalf("%d %s", r.code, r.body)
				}
				acts := e.chats.Actions()[before:]
				if tc.code != 200 {
					if len(acts) != 0 {
						t.Errorf("handled %+v", acts)
					}
					return
				}
				if len(acts) != 1 || acts[0] != tc.want {
					t.Errorf("handled %+v, want %+v", acts, tc.want)
				}
				var out actionResponse
				r.json(t, &out)
				if out.Reply != "handled "+string(tc.want.Kind) {
					t.Errorf("reply %q", out.Reply)
				}
			})
		}
		t.Run("choices", func(t *testing.T) {
			r := e.do("POST", "/v1/admin/agents/alice/actions", map[string]string{"command": "chats"}, adminBearer...)
			var out actionResponse
			r.json(t, &out)
			if r.code != 200 || len(out.Choices) != 2 || out.Choices[0].Action != bridge.ActSwitch {
				t.Errorf("%d %s", r.code, r.body)
			}
		})
		t.Run("storage down", func(t *testing.T) {
			e.chats.SetFail(bridge.ErrUnavailable)
			defer e.chats.SetFail(nil)
			if r := e.do("POST", "/v1/admin/agents/alice/actions", map[string]string{"command": "online"}, adminBearer...); r.code != 503 {
				t.Errorf("%d %s", r.code, r.body)
			}
		})
	})
}

// metricValue finds one series ("name{labels}") in a /metrics text body.
func metricValue(t testing.TB, body []byte, series string) (float64, bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// wantMetrics checks series values in a /metrics body.
func wantMetrics(t testing.TB, body []byte, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		got, ok := metricValue(t, body, series)
		if !ok {
			t.Errorf("%s missing", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}

func TestBoardMetrics(t *testing.T) {
	e := newEnvDir(t, boardDirectory(t))
	e.setStatus(agentAlice, presence.Online)
	e.setStatus(agentBob, presence.Invisible)
	e.reload()
	e.startChat(propAcme, "hello")

	r := e.do("GET", "/metrics", nil)
	if r.code != 200 {
		t.Fatalf("%d", r.code)
	}
	wantMetrics(t, r.body, map[string]float64{
		`onduty_agents{property="acme",status="online"}`:          1,
		`onduty_agents{property="acme",status="invisible"}`:       1,
		`onduty_agents{property="acme",status="away"}`:            0,
		`onduty_agents{property="quiet",status="offline"}`:        1,
		`onduty_widget_status{property="acme",status="online"}`:   1,
		`onduty_widget_status{property="acme",status="offline"}`:  0,
		`onduty_widget_status{property="quiet",status="offline"}`: 1,
		`onduty_chats{property="acme",state="pending"}`:           1,
		`onduty_chats{property="acme",state="active"}`:            0,
		`onduty_chats{property="demo",state="pending"}`:           0,
	})
	stale := 0.0
	if e.watcher.Stale() {
		stale = 1
	}
	wantMetrics(t, r.body, map[string]float64{`onduty_presence_stale`: stale})
	if _, ok := metricValue(t, r.body, `go_goroutines`); !ok {
		t.Errorf("the shared registry is not served")
	}

	t.Run("chat counts are cached between scrapes", func(t *testing.T) {
		n := e.chats.CountCalls()
		e.startChat(propAcme, "second")
		r := e.do("GET", "/metrics", nil)
		if e.chats.CountCalls() != n {
			t.Errorf("scrape within %s read Redis again", countsTTL)
		}
		wantMetrics(t, r.body, map[string]float64{`onduty_chats{property="acme",state="pending"}`: 1})
		e.srv.coll.ttl = 0
		r = e.do("GET", "/metrics", nil)
		wantMetrics(t, r.body, map[string]float64{`onduty_chats{property="acme",state="pending"}`: 2})
	})

	t.Run("presence gauges follow the watcher", func(t *testing.T) {
		e.setStatus(agentAlice, presence.Away)
		e.reload()
		r := e.do("GET", "/metrics", nil)
		wantMetrics(t, r.body, map[string]float64{
			`onduty_agents{property="acme",status="online"}`:      0,
			`onduty_agents{property="acme",status="away"}`:        1,
			`onduty_widget_status{property="acme",status="away"}`: 1,
			`onduty_widget_status{property="demo",status="away"}`: 1,
		})
	})

	t.Run("a second server in the process does not collide", func(t *testing.T) {
		srv := New(e.cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
		if r := doApp(t, srv, "GET", "/metrics", nil); r.code != 200 {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
}

func TestAdminEvents(t *testing.T) {
	e := newEnvDir(t, boardDirectory(t))
	e.runWatcher()
	e.setStatus(agentAlice, presence.Online)
	wait.For(t, "alice online", func() bool { return e.watcher.Effective(agentAlice) == presence.Online })
	base := e.serve()

	presenceOf := func(ev sseEvent) boardProperty {
		t.Helper()
		var bp boardProperty
		if err := json.Unmarshal([]byte(ev.Data), &bp); err != nil {
			t.Fatalf("%s: %v", ev.Data, err)
		}
		return bp
	}
	chatsOf := func(ev sseEvent) bridge.BoardChats {
		t.Helper()
		var bc bridge.BoardChats
		if err := json.Unmarshal([]byte(ev.Data), &bc); err != nil {
			t.Fatalf("%s: %v", ev.Data, err)
		}
		return bc
	}

	t.Run("all properties", func(t *testing.T) {
		s := openSSE(t, base+"/v1/admin/events", adminBearer...)
		if s.res.StatusCode != 200 || !strings.HasPrefix(s.res.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %v", s.res.StatusCode, s.res.Header)
		}
		seen := map[presence.PropertyID]bool{}
		for range 3 {
			bp := presenceOf(s.next("presence", "chats"))
			seen[bp.Property] = true
		}
		if len(seen) != 3 {
			t.Errorf("presence for %v", seen)
		}
		s.Close()
	})

	t.Run("one property, live", func(t *testing.T) {
		s := openSSE(t, base+"/v1/admin/properties/acme/events", adminBearer...)
		bp := presenceOf(s.next("presence"))
		if bp.Property != propAcme || bp.Report.Status != presence.Online || bp.Report.Agents[0].Effective != presence.Online || bp.Now.IsZero() {
			t.Fatalf("first presence %+v", bp)
		}
		bc := chatsOf(s.next("chats"))
		if bc.Property != propAcme || len(bc.Pending) != 0 {
			t.Fatalf("first chats %+v", bc)
		}

		e.setStatus(agentAlice, presence.Away)
		for {
			bp = presenceOf(s.next("presence", "chats"))
			if bp.Report.Agents[0].Effective == presence.Away {
				break
			}
		}
		if bp.Report.Status != presence.Away || bp.Report.Reason != "nobody online; away: Alice" {
			t.Errorf("after change %+v", bp.Report)
		}

		id, _ := e.startChat(propAcme, "Hello?")
		// New chats are not presence changes: they come with the periodic refresh.
		bc = chatsOf(s.next("chats", "presence"))
		if len(bc.Pending) != 1 || string(bc.Pending[0].ID) != id {
			t.Errorf("chats after start %+v", bc)
		}
		s.next(":", "presence", "chats") // heartbeats keep the stream alive
	})

	t.Run("boards share one chat read per change", func(t *testing.T) {
		const boards = 5
		var streams []*sseStream
		for range boards {
			s := openSSE(t, base+"/v1/admin/properties/acme/events", adminBearer...)
			s.next("presence")
			s.next("chats")
			streams = append(streams, s)
		}
		before := e.chats.BoardCalls()
		e.setStatus(agentAlice, presence.Online)
		for _, s := range streams {
			for {
				if bp := presenceOf(s.next("presence", "chats")); bp.Report.Agents[0].Effective == presence.Online {
					break
				}
			}
		}
		// One read for the change, perhaps one more for a refresh that fell
		// in between; never one per board.
		if n := e.chats.BoardCalls() - before; n > 2 {
			t.Errorf("%d Board calls for one change seen by %d boards", n, boards)
		}
	})

	t.Run("chats unavailable", func(t *testing.T) {
		e.chats.SetFail(bridge.ErrUnavailable)
		defer e.chats.SetFail(nil)
		s := openSSE(t, base+"/v1/admin/properties/quiet/events", adminBearer...)
		s.next("presence")
		ev := s.next("chats_error", "chats") // after a cached list, at the next refresh
		if !strings.Contains(ev.Data, `"property":"quiet"`) {
			t.Errorf("chats_error %s", ev.Data)
		}
	})

	t.Run("stream ends at shutdown", func(t *testing.T) {
		srv := New(e.cfg, e.watcher, e.store, e.chats, e.redis.Client, e.log)
		ln := listen(t)
		stop := serveOn(t, srv, ln)
		s := openSSE(t, "http://"+ln.Addr().String()+"/v1/admin/events", adminBearer...)
		s.next("presence", "chats")
		stop()
		s.ended()
	})
}

// TestAdminConversationMetrics scripts a conversation through the real
// bridge: a visitor starts a chat, the agent accepts and answers through the
// admin actions endpoint, and /metrics shows it.
func TestAdminConversationMetrics(t *testing.T) {
	e := newEnvDir(t, boardDirectory(t))
	b, err := bridge.New(bridge.Config{
		Prefix:     e.redis.Prefix,
		Properties: map[presence.PropertyID]bridge.Routing{propDemo: {}, propAcme: {}, propQuiet: {}},
		PollEvery:  20 * time.Millisecond,
	}, e.redis.Client, e.store, e.watcher, e.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.srv = New(e.cfg, e.watcher, e.store, b, e.redis.Client, e.log)
	e.srv.coll.ttl = 0
	e.setStatus(agentAlice, presence.Online)
	e.reload()

	scrape := func() []byte {
		t.Helper()
		r := e.do("GET", "/metrics", nil)
		if r.code != 200 {
			t.Fatalf("/metrics: %d", r.code)
		}
		return r.body
	}
	const firstCount = `onduty_first_response_seconds_count{property="acme"}`
	const started = `onduty_chats_started_total{property="acme"}`
	before := scrape()
	n0, _ := metricValue(t, before, firstCount)
	s0, _ := metricValue(t, before, started)

	chatID, token := e.startChat(propAcme, "Hello, is my order shipped?")
	wantMetrics(t, scrape(), map[string]float64{
		`onduty_chats{property="acme",state="pending"}`: 1,
		`onduty_chats{property="acme",state="active"}`:  0,
	})

	act := func(body map[string]string) string {
		t.Helper()
		r := e.do("POST", "/v1/admin/agents/alice/actions", body, adminBearer...)
		var out actionResponse
		r.json(t, &out)
		if r.code != 200 {
			t.Fatalf("action %v: %d %s", body, r.code, r.body)
		}
		return out.Reply
	}
	if reply := act(map[string]string{"command": "accept"}); !strings.Contains(reply, "You're now chatting with Vic") {
		t.Errorf("accept: %q", reply)
	}
	act(map[string]string{"text": "Hi Vic, it ships today."})

	m := scrape()
	if n, _ := metricValue(t, m, firstCount); n != n0+1 {
		t.Errorf("first responses %v, want %v", n, n0+1)
	}
	if n, _ := metricValue(t, m, started); n != s0+1 {
		t.Errorf("chats started %v, want %v (counted once per chat)", n, s0+1)
	}
	wantMetrics(t, m, map[string]float64{
		`onduty_chats{property="acme",state="pending"}`:         0,
		`onduty_chats{property="acme",state="active"}`:          1,
		`onduty_chats{property="acme",state="offline"}`:         0,
		`onduty_agents{property="acme",status="online"}`:        1,
		`onduty_agents{property="acme",status="offline"}`:       1,
		`onduty_widget_status{property="acme",status="online"}`: 1,
	})

	r := e.do("GET", "/v1/admin/properties/acme/chats", nil, adminBearer...)
	var bc bridge.BoardChats
	r.json(t, &bc)
	if len(bc.Active) != 1 || string(bc.Active[0].ID) != chatID || bc.Active[0].Owner != agentAlice || bc.Active[0].AcceptedAt == nil ||
		bc.Active[0].Last == nil || bc.Active[0].Last.Text != "Hi Vic, it ships today." {
		t.Errorf("board %s", r.body)
	}
	r = e.do("GET", "/v1/chats/"+chatID+"/messages", nil, "Authorization", "Bearer "+token)
	if r.code != 200 || !strings.Contains(string(r.body), `"text":"Hi Vic, it ships today."`) {
		t.Errorf("transcript: %d %s", r.code, r.body)
	}
}
