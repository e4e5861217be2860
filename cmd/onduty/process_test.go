package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/tgfake"
	"github.com/onduty/onduty/internal/wait"
)

// asMain makes the test binary behave as the onduty binary: the process
// tests start it again with this variable set, so they run the real main()
// (flags, config file, signals, exit code) without a separate build.
const asMain = "ONDUTY_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// Agents of the process tests' configuration.
const (
	procAlice = int64(111)
	procBob   = int64(222)
	procToken = "4242:process-test-token"
)

// procConfig is a configuration for real processes: one property with
// least_loaded routing and short timers, two always-online Telegram agents,
// Telegram in polling mode (the API URL comes per instance from the
// environment). acceptTimeout and queueTimeout are the property's timers.
func procConfig(t *testing.T, r *redistest.Redis, acceptTimeout, queueTimeout time.Duration) string {
	t.Helper()
	return writeFile(t, fmt.Sprintf(`
redis_url: %q
redis_prefix: %q
log_level: debug
properties:
  - id: acme
    name: Acme
    assignment: {strategy: least_loaded, accept_timeout: %s, queue_timeout: %s, invisible_fallback_after: 0s}
agents:
  - {id: alice, name: Alice, properties: [acme], telegram_user_id: %d, condition: always, initial_status: online}
  - {id: bob, name: Bob, properties: [acme], telegram_user_id: %d, condition: always, initial_status: online}
telegram: {token: %q, mode: polling}
`, r.URL, r.Prefix, acceptTimeout, queueTimeout, procAlice, procBob, procToken))
}

// withInstanceID is a copy of the configuration file with outbox.instance_id set.
func withInstanceID(t *testing.T, file, id string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, string(b)+fmt.Sprintf("outbox: {instance_id: %q}\n", id))
}

// process is one onduty serve process started from the test binary.
type process struct {
	name string
	cmd  *exec.Cmd
	base string // http://host:port
	logs *syncBuffer
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProcess runs `onduty serve --config file` as instance name: its
// Telegram requests go to api under /name, and it listens on a port of its
// own. It returns once /readyz answers 200. The process is killed at cleanup
// if still running.
func startProcess(t *testing.T, name, file string, api fakeBot) *process {
	t.Helper()
	return startProcessAt(t, name, file, api, freeAddr(t))
}

// freeAddr is a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcessAt is startProcess listening on addr, with extra environment
// variables ("KEY=value").
func startProcessAt(t *testing.T, name, file string, api fakeBot, addr string, extraEnv ...string) *process {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ONDUTY_") && !strings.HasPrefix(kv, "TELEGRAM_") && !strings.HasPrefix(kv, "SLACK_") {
			env = append(env, kv)
		}
	}
	env = append(env, asMain+"=1", "ONDUTY_LISTEN="+addr, "TELEGRAM_API_URL="+api.URL()+"/"+name)
	env = append(env, extraEnv...)
	p := &process{name: name, base: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "serve", "--config", file)
	p.cmd.Env = env
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, p.logs.String())
		}
	})
	wait.Within(t, 20*time.Second, name+" ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited at start: %v\n%s", name, p.err, p.logs.String())
		default:
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// exited waits for the process to end and returns its exit code.
func (p *process) exited(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", p.name, within)
	}
	return p.cmd.ProcessState.ExitCode()
}

// fakeBot is the fake Bot API as the process tests use it: each instance's
// calls go to /NAME/bot<token>/METHOD (TELEGRAM_API_URL ends in /NAME), so a
// test sees which instance made each call.
type fakeBot struct{ *tgfake.Server }

func newFakeBot(t *testing.T) fakeBot {
	api := tgfake.New(tgfake.Options{Token: procToken, BotName: "onduty_proc_bot", Report: t})
	t.Cleanup(api.Close)
	return fakeBot{api}
}

// say queues a private message from a Telegram user to the bot.
func (f fakeBot) say(from int64, text string) { f.Push(tgfake.PrivateMessage(from, text)) }

// ask sends a command as agent from and waits for instance inst to answer it.
func (f fakeBot) ask(t *testing.T, inst string, from int64, command string) {
	t.Helper()
	asked := time.Now()
	f.say(from, command)
	wait.Within(t, 15*time.Second, inst+" to answer "+command, func() bool {
		return len(f.CallsWhere(func(c tgfake.Call) bool {
			return c.Instance == inst && c.Method == "sendMessage" && c.At.After(asked) &&
				c.Params["chat_id"] == strconv.FormatInt(from, 10) && !strings.HasPrefix(c.Params["text"], "<b>New chat") &&
				!strings.HasPrefix(c.Params["text"], "<b>Offline message")
		})) > 0
	})
}

func (f fakeBot) polledBy(inst string) int {
	return len(f.CallsWhere(func(c tgfake.Call) bool { return c.Instance == inst && c.Method == "getUpdates" }))
}

// offers counts, per agent chat, the sendMessage calls offering chat (an
// Accept button for it) whose text starts with title ("New chat" or
// "Offline message").
func (f fakeBot) offers(chat, title string) map[string]int {
	n := map[string]int{}
	for _, c := range f.CallsWhere(func(c tgfake.Call) bool {
		return c.Method == "sendMessage" && strings.Contains(c.Params["reply_markup"], `"a:`+chat+`"`) &&
			strings.HasPrefix(c.Params["text"], "<b>"+title)
	}) {
		n[c.Params["chat_id"]]++
	}
	return n
}

// outboxLen is the number of deliveries waiting in every Telegram outbox shard.
func outboxLen(t *testing.T, r *redistest.Redis) int64 {
	t.Helper()
	ctx := context.Background()
	keys, err := r.Client.Keys(ctx, r.Prefix+"outbox:{telegram:*}").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, k := range keys {
		l, err := r.Client.XLen(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += l
	}
	return n
}

type startedChat struct {
	ChatID       string `json:"chat_id"`
	VisitorToken string `json:"visitor_token"`
}

func transcriptOf(t *testing.T, base string, c startedChat) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/chats/"+c.ChatID+"/messages", nil)
	req.Header.Set("Authorization", "Bearer "+c.VisitorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("transcript: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

const queueTimeoutText = "Sorry, nobody could answer right away"

// TestProcessKilledMidConversation runs two onduty processes on one Redis and
// one (fake) Telegram, SIGKILLs the one that polls and works the outbox just
// after a chat's first offer went out, and checks that the survivor takes
// over: it polls Telegram, fires the accept timeout (the offer to the second
// agent) and the queue timeout (the visitor told, the chat offered as an
// offline message), each exactly once. It takes about 10s, the Telegram
// polling lease; A's outbox shards hold no lease once drained, so B delivers
// what it queues at once.
func TestProcessKilledMidConversation(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	api := newFakeBot(t)
	file := procConfig(t, r, 2*time.Second, 6*time.Second)

	a := startProcess(t, "A", file, api)
	wait.Within(t, 15*time.Second, "A to poll Telegram", func() bool { return api.polledBy("A") > 0 })
	b := startProcess(t, "B", file, api)

	var chat startedChat
	if code := postJSON(t, b.base+"/v1/properties/acme/chats", "", map[string]string{"name": "Kim", "message": "hello before the crash"}, &chat); code != 201 {
		t.Fatalf("start chat: %d", code)
	}
	wait.Within(t, 15*time.Second, "the first offer", func() bool { return len(api.offers(chat.ChatID, "New chat")) == 1 })
	if polled := api.polledBy("B"); polled != 0 {
		t.Errorf("B polled Telegram %d times while A held the lease", polled)
	}

	// Kill A between deliveries: a kill in the few milliseconds between
	// Telegram's answer and the adapter recording it repeats that one
	// message (delivery is at least once; docs/RELIABILITY.md).
	wait.Within(t, 15*time.Second, "A to finish delivering", func() bool { return outboxLen(t, r) == 0 })
	killedAt := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.exited(t, 10*time.Second)

	// B polls once A's lease has run out (10s), and answers an agent.
	wait.Within(t, 30*time.Second, "B to poll Telegram", func() bool { return api.polledBy("B") > 0 })
	t.Logf("B polls %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	api.ask(t, "B", procAlice, "/status")

	// The accept timeout and the queue timeout fire on B, which delivers them.
	wait.Within(t, 60*time.Second, "the offer to the second agent", func() bool { return len(api.offers(chat.ChatID, "New chat")) == 2 })
	t.Logf("second offer %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	wait.Within(t, 30*time.Second, "the queue timeout told to the visitor", func() bool {
		return strings.Contains(transcriptOf(t, b.base, chat), queueTimeoutText)
	})
	wait.Within(t, 30*time.Second, "the offline-message offers", func() bool { return len(api.offers(chat.ChatID, "Offline message")) == 2 })

	// A last round trip through B's outbox and polling, then nothing fired twice.
	api.ask(t, "B", procBob, "/chats")
	for _, title := range []string{"New chat", "Offline message"} {
		got := api.offers(chat.ChatID, title)
		want := map[string]int{strconv.FormatInt(procAlice, 10): 1, strconv.FormatInt(procBob, 10): 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q offers per agent chat: %v, want %v", title, got, want)
		}
	}
	if n := strings.Count(transcriptOf(t, b.base, chat), queueTimeoutText); n != 1 {
		t.Errorf("the queue timeout was told %d times", n)
	}
	select {
	case <-b.done:
		t.Fatalf("B exited: %v", b.err)
	default:
	}
}

// rawPost starts a POST on a connection of its own and sends all of the
// body but the last byte; finish sends it and returns the status code. The
// connection first carries a GET /healthz, so the server has certainly
// accepted it before the POST begins.
func rawPost(t *testing.T, base, path, token, body string) (finish func() int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz on the raw connection: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		path, token, len(body), body[:len(body)-1])
	return func() int {
		t.Helper()
		if _, err := io.WriteString(conn, body[len(body)-1:]); err != nil {
			t.Fatalf("finish the request: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response to the in-flight request: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// TestProcessSIGTERM stops the instance that polls Telegram with SIGTERM
// while a visitor's request is half sent: the request still completes (and
// its message is kept), the process exits 0, and it releases the Telegram
// polling lease and any outbox lease, so the other instance polls well
// before the lease (10s) would have run out.
func TestProcessSIGTERM(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	api := newFakeBot(t)
	file := procConfig(t, r, 30*time.Second, 5*time.Minute)
	ctx := context.Background()

	c := startProcess(t, "C", withInstanceID(t, file, "C"), api)
	wait.Within(t, 15*time.Second, "C to poll Telegram", func() bool { return api.polledBy("C") > 0 })
	d := startProcess(t, "D", withInstanceID(t, file, "D"), api)

	lease := r.Prefix + "tg:lease"
	ownerC, err := r.Client.Get(ctx, lease).Result()
	if err != nil {
		t.Fatalf("polling lease: %v", err)
	}
	outboxLeases := func(holder string) []string {
		keys, err := r.Client.Keys(ctx, r.Prefix+"outbox:*:lease").Result()
		if err != nil {
			t.Fatal(err)
		}
		var held []string
		for _, k := range keys {
			if v, _ := r.Client.Get(ctx, k).Result(); v == holder {
				held = append(held, k)
			}
		}
		return held
	}
	var chat startedChat
	if code := postJSON(t, c.base+"/v1/properties/acme/chats", "", map[string]string{"name": "Sam", "message": "first"}, &chat); code != 201 {
		t.Fatalf("start chat: %d", code)
	}
	wait.Within(t, 15*time.Second, "the offer", func() bool { return len(api.offers(chat.ChatID, "New chat")) == 1 })

	finish := rawPost(t, c.base, "/v1/chats/"+chat.ChatID+"/messages", chat.VisitorToken, `{"text":"sent while stopping"}`)
	time.Sleep(100 * time.Millisecond) // let C start reading the POST (nothing tells when it has)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, c.logs, "event streams ended") // C's HTTP server is shutting down
	waitLog(t, c.logs, "polling stopped")
	if code := finish(); code != 202 {
		t.Errorf("in-flight request answered %d, want 202", code)
	}
	if code := c.exited(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	exitedAt := time.Now()
	if v, _ := r.Client.Get(ctx, lease).Result(); v == ownerC {
		t.Errorf("C still holds the polling lease after exiting")
	}
	if held := outboxLeases("C"); len(held) != 0 {
		t.Errorf("C still holds %d outbox leases after exiting: %v", len(held), held)
	}
	wait.Within(t, 10*time.Second, "D to poll Telegram", func() bool { return api.polledBy("D") > 0 })
	t.Logf("D polls %s after C exited (lease TTL 10s)", time.Since(exitedAt).Round(time.Millisecond))

	if tr := transcriptOf(t, d.base, chat); !strings.Contains(tr, "sent while stopping") {
		t.Errorf("the in-flight message is not in the transcript: %s", tr)
	}
	// D relays it: the message reaches the agent who was offered the chat.
	wait.Within(t, 15*time.Second, "the in-flight message at the agent", func() bool {
		return len(api.CallsWhere(func(c tgfake.Call) bool {
			return c.Method == "sendMessage" && strings.Contains(c.Params["text"], "sent while stopping")
		})) == 1
	})
}

// TestProcessKill9ResumesDeliveries SIGKILLs the instance working the outbox
// shard of a chat whose offer Telegram keeps refusing (429), and measures
// the time from the kill to the offer's delivery: by a second instance
// already running (it takes the shard when the dead one's 3s lease runs
// out), by the instance restarted under the same outbox.instance_id (it
// takes its own shard at once), and restarted without one (it waits for the
// lease).
func TestProcessKill9ResumesDeliveries(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		second bool   // a second instance runs before the kill
		id     string // the restarted instance's outbox.instance_id
	}{
		{"second instance running", true, ""},
		{"restarted with its instance_id", false, "A"},
		{"restarted without instance_id", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := redistest.New(t)
			api := newFakeBot(t)
			base := procConfig(t, r, time.Hour, time.Hour)
			fileA := withInstanceID(t, base, "A")
			a := startProcess(t, "A", fileA, api)
			var b *process
			if tt.second {
				b = startProcess(t, "B", withInstanceID(t, base, "B"), api)
			}
			api.FailAfter("sendMessage", 0, tgfake.Forever, 429, "Too Many Requests: retry after 1", 1)
			var chat startedChat
			if code := postJSON(t, a.base+"/v1/properties/acme/chats", "", map[string]string{"name": "Ida", "message": "queued before the kill"}, &chat); code != 201 {
				t.Fatalf("start chat: %d", code)
			}
			// Kill whichever instance works the chat's outbox shard.
			var holder string
			wait.Within(t, 15*time.Second, "an instance working the chat's shard", func() bool {
				refused := api.CallsWhere(func(c tgfake.Call) bool { return c.Failed && strings.Contains(c.Params["reply_markup"], chat.ChatID) })
				if len(refused) == 0 {
					return false
				}
				holder = refused[len(refused)-1].Instance
				return true
			})
			victim := a
			if holder == "B" {
				victim = b
			}
			api.StopFailing("sendMessage")
			killedAt := time.Now()
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			victim.exited(t, 10*time.Second)
			if !tt.second {
				file := base
				if tt.id != "" {
					file = withInstanceID(t, base, tt.id)
				}
				startProcess(t, "A2", file, api)
				t.Logf("restarted instance ready %s after the kill", time.Since(killedAt).Round(time.Millisecond))
			}
			var first time.Time
			wait.Within(t, 20*time.Second, "the offer delivered after the kill", func() bool {
				got := api.CallsWhere(func(c tgfake.Call) bool {
					return c.Method == "sendMessage" && !c.Failed && c.At.After(killedAt) && strings.Contains(c.Params["reply_markup"], chat.ChatID)
				})
				if len(got) > 0 {
					first = got[0].At
				}
				return len(got) > 0
			})
			t.Logf("first delivery %s after kill -9", first.Sub(killedAt).Round(time.Millisecond))
		})
	}
}
