package widget

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/wait"
)

// rawGet sends one GET on a fresh connection and reads the response.
func rawGet(t testing.TB, addr, path string) (resp, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return resp{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path); err != nil {
		return resp{}, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{code: res.StatusCode, header: res.Header, body: b}, err
}

// readUnasked dials addr and reads a response without sending a request:
// what the server says to a connection it refuses at once.
func readUnasked(addr string) (resp, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return resp{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{code: res.StatusCode, header: res.Header, body: b}, err
}

const emfileChildEnv = "ONDUTY_TEST_EMFILE_CHILD"

// TestOutOfFileDescriptors: a server whose file limit is exhausted by idle
// connections keeps running (accept errors back off and are counted), and
// answers /healthz again as the connections go. The server runs in a child
// process (this test binary again) with a lowered RLIMIT_NOFILE.
func TestOutOfFileDescriptors(t *testing.T) {
	if os.Getenv(emfileChildEnv) != "" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutOfFileDescriptors$", "-test.count=1")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1", "ONDUTY_TEST_LOG=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var out lockedBuf
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if a, ok := strings.CutPrefix(line, "ADDR "); ok {
				addrc <- a
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("child: %v\n%s\n%s", err, out.String(), stderr.String())
			}
		case <-time.After(testTimeout):
			_ = cmd.Process.Kill()
			t.Errorf("child did not stop\n%s", out.String())
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-exited:
		t.Fatalf("child exited: %v\n%s\n%s", err, out.String(), stderr.String())
	case <-time.After(testTimeout):
		t.Fatal("child did not start")
	}
	if r, err := rawGet(t, addr, "/healthz"); err != nil || r.code != 200 {
		t.Fatalf("healthz before: %v %d", err, r.code)
	}

	// Twice the child's free descriptors: the rest wait in the backlog.
	const n = 120
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The child's descriptors are all taken now: its accept fails (EMFILE).
	wait.For(t, "accept errors logged", func() bool { return strings.Contains(stderr.String(), "accept failed, retrying") })
	if r, err := rawGet(t, addr, "/healthz"); err == nil {
		t.Logf("healthz while exhausted: %d (answered from the backlog)", r.code)
	}
	select {
	case err := <-exited:
		t.Fatalf("the server ended with its descriptors exhausted: %v\n%s", err, stderr.String())
	default:
	}
	// As connections go, the server answers again.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	wait.For(t, "healthz answers again", func() bool {
		r, err := rawGet(t, addr, "/healthz")
		return err == nil && r.code == 200
	})
	r, err := rawGet(t, addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := metricValue(t, r.body, "onduty_accept_errors_total"); !ok || v < 1 {
		t.Errorf("onduty_accept_errors_total = %v (%v), want > 0", v, ok)
	}
	logs := stderr.String()
	if c := strings.Count(logs, "accept failed, retrying"); c > 30 {
		t.Errorf("accept errors logged %d times: want at most one line a second", c)
	}
}

// emfileChild serves with a file limit a little over what is open now and
// prints its address; it stops when stdin closes.
func emfileChild(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.ConnectionsPerIP = -1 })
	ln := listen(t)
	stop := serveOn(t, e.srv, ln)
	defer stop()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	limit := uint64(len(entries) + 60)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestConnectionsPerIP: connections over the per-IP cap are answered 429
// with Retry-After and closed; a freed slot is usable again.
func TestConnectionsPerIP(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.ConnectionsPerIP = 3 })
	addr := strings.TrimPrefix(e.serve(), "http://")
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// The server counts a connection when it accepts it: wait until the
	// fourth is refused.
	var r resp
	wait.For(t, "fourth connection refused", func() bool {
		var err error
		r, err = readUnasked(addr)
		return err == nil && r.code == 429
	})
	if r.header.Get("Retry-After") == "" || r.errCode() != "too_many_connections" {
		t.Errorf("refusal: %v %s", r.header, r.body)
	}
	held[0].Close()
	held = held[1:]
	wait.For(t, "a freed slot serves", func() bool {
		r, err := rawGet(t, addr, "/healthz")
		return err == nil && r.code == 200
	})

	t.Run("trusted proxies are not capped", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.Limits.ConnectionsPerIP = 1
			c.TrustedProxies = mustPrefixes(t, "127.0.0.0/8")
		})
		addr := strings.TrimPrefix(e.serve(), "http://")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 3 {
			if r, err := rawGet(t, addr, "/healthz"); err != nil || r.code != 200 {
				t.Fatalf("%v %d", err, r.code)
			}
		}
	})
}

// TestStreamCaps: event streams over the instance's cap get 503, over the
// IP's cap 429, both with Retry-After (the widget then polls); a closed
// stream frees its slot.
func TestStreamCaps(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limits    Limits
		wantCode  int
		wantRetry string
	}{
		{"instance", Limits{Streams: 2, StreamsPerIP: -1}, 503, "10"},
		{"per IP", Limits{Streams: -1, StreamsPerIP: 2}, 429, "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Limits = tc.limits })
			e.runWatcher()
			base := e.serve()
			id, tok := e.startChat(propDemo, "hi")
			a := openSSE(t, base+"/v1/properties/demo/status/stream")
			a.next("status")
			b := openSSE(t, base+"/v1/chats/"+id+"/events?token="+tok)
			b.next("status")
			for _, path := range []string{"/v1/properties/demo/status/stream", "/v1/chats/" + id + "/events?token=" + tok} {
				s := openSSE(t, base+path, "Origin", "https://anywhere.example")
				body, _ := io.ReadAll(s.res.Body)
				s.Close()
				if s.res.StatusCode != tc.wantCode || s.res.Header.Get("Retry-After") != tc.wantRetry ||
					!strings.Contains(string(body), "too_many_streams") || s.res.Header.Get("Access-Control-Allow-Origin") == "" {
					t.Errorf("%s: %d Retry-After %q %v %s", path, s.res.StatusCode, s.res.Header.Get("Retry-After"), s.res.Header, body)
				}
			}
			a.Close()
			wait.For(t, "slot freed", func() bool { return e.srv.OpenStreams() == 1 })
			c := openSSE(t, base+"/v1/properties/demo/status/stream")
			defer c.Close()
			if c.res.StatusCode != 200 {
				t.Errorf("after a stream closed: %d", c.res.StatusCode)
			}
			b.Close()
		})
	}
}

// TestStreamCapRace: streams opened at once never exceed the cap (the slot
// is taken on the hijacked connection), and every refusal is a 503.
func TestStreamCapRace(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits = Limits{Streams: 5, StreamsPerIP: -1, ConnectionsPerIP: -1} })
	base := e.serve()
	const n = 20
	type result struct {
		code int
		err  error
		body io.Closer
	}
	results := make(chan result, n)
	for range n {
		go func() {
			res, err := http.Get(base + "/v1/properties/demo/status/stream")
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{code: res.StatusCode, body: res.Body}
		}()
	}
	ok := 0
	for range n {
		r := <-results
		if r.err != nil {
			t.Errorf("stream: %v", r.err)
			continue
		}
		defer r.body.Close()
		switch r.code {
		case 200:
			ok++
		case 503:
		default:
			t.Errorf("status %d", r.code)
		}
	}
	if ok != 5 {
		t.Errorf("%d streams opened, want 5", ok)
	}
}
