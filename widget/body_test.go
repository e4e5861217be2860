package widget

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
)

// announce opens a connection and sends a request head announcing a body of
// length bytes, then the first n bytes of it.
func announce(t testing.TB, addr, method, path, ctype string, length, n int, headers ...string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n", method, path, ctype, length)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	b.WriteString(strings.Repeat("a", n))
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return c
}

func readResp(t testing.TB, c net.Conn) resp {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.Close { // net/http moves "Connection: close" here
		res.Header.Set("Connection", "close")
	}
	return resp{code: res.StatusCode, header: res.Header, body: b}
}

// TestBodyLimitsByRoute: a Content-Length over the route's limit is refused
// with 413 at once, before the body is sent; under it, the request is
// served; a body without Content-Length (chunked) is read up to the limit.
func TestBodyLimitsByRoute(t *testing.T) {
	e := newEnv(t)
	e.srv.Mount("/hook", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	addr := strings.TrimPrefix(e.serve(), "http://")
	id, tok := e.startChat(propDemo, "hi")
	auth := []string{"Authorization", "Bearer " + tok}
	for _, tc := range []struct {
		name, path, ctype string
		length            int
		headers           []string
		want              int
	}{
		{"json route, 6 MB announced", "/v1/properties/demo/chats", "application/json", 6291000, nil, 413},
		{"json route, just over 16 KiB", "/v1/chats/" + id + "/messages", "application/json", MaxBodyBytes + 1, auth, 413},
		{"callback, over 1 MiB", "/hook", "application/json", callbackBodyBytes + 1, nil, 413},
		{"callback sub-path, over 1 MiB", "/hook/x", "application/json", callbackBodyBytes + 1, nil, 413},
		{"upload, over its limit", "/v1/chats/" + id + "/files", "multipart/form-data; boundary=x", uploadBodyBytes + 1, auth, 413},
		{"upload limit on another route", "/v1/chats/" + id + "/messages", "multipart/form-data; boundary=x", MaxUploadBytes, auth, 413},
		// No such route: answered from the head too (405), not held.
		{"upload limit on a longer path", "/v1/chats/" + id + "/files/x", "multipart/form-data; boundary=x", MaxUploadBytes, auth, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the head is sent: the answer cannot wait for the body.
			c := announce(t, addr, "POST", tc.path, tc.ctype, tc.length, 0, tc.headers...)
			defer c.Close()
			r := readResp(t, c)
			if r.code != tc.want || (tc.want == 413 && (r.errCode() != "too_large" || r.header.Get("Connection") != "close")) {
				t.Errorf("%d %v %s", r.code, r.header, r.body)
			}
		})
	}
	t.Run("a client cannot mark its own request refused", func(t *testing.T) {
		r := e.do("GET", "/healthz", nil, refusedLength, "1")
		if r.code != 200 {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
	t.Run("chunked bodies are read up to the limit", func(t *testing.T) {
		for _, tc := range []struct {
			n, want int
		}{{MaxBodyBytes, 400}, {MaxBodyBytes + 1, 413}, {10 * MaxBodyBytes, 413}} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			body := `{"text":"` + strings.Repeat("a", tc.n-11) + `"}`
			fmt.Fprintf(c, "POST /v1/chats/%s/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", id, tok, len(body), body)
			r := readResp(t, c)
			c.Close()
			// 16 KiB of text is over 4000 characters: 400, read and refused.
			if r.code != tc.want {
				t.Errorf("%d bytes chunked: %d %s", tc.n, r.code, r.body)
			}
		}
	})
	t.Run("a callback under the limit is served", func(t *testing.T) {
		c := announce(t, addr, "POST", "/hook", "application/json", 200<<10, 200<<10)
		defer c.Close()
		if r := readResp(t, c); r.code != 200 || string(r.body) != strconv.Itoa(200<<10) {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
}

// rss is the process's resident set size in bytes (0 if unknown).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestBodyAttackMemory: 1,000 connections that announce a large body and
// send 1 KB of it hold little memory: those over their route's limit are
// refused at once, the others hold what they sent plus fasthttp's 8 KiB
// read-ahead. Client and server are both in this process, so the figures
// are an upper bound for the server. Run with -v for the figures.
func TestBodyAttackMemory(t *testing.T) {
	n := 1000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && int(lim.Cur) < 2*n+200 {
		n = max(40, (int(lim.Cur)-200)/2)
	}
	e := newEnv(t, func(c *Config) {
		c.Limits.ConnectionsPerIP = -1
		c.RateLimits.UploadsPerChat = -1
		c.RateLimits.UploadsPerIPPerHour = -1
	})
	e.srv.Mount("/hook", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	addr := strings.TrimPrefix(e.serve(), "http://")
	id, tok := e.startChat(propDemo, "hi")
	auth := []string{"Authorization", "Bearer " + tok}
	heap0, rss0 := heapInuse(), rss()

	kinds := []struct {
		path, ctype string
		length      int
		headers     []string
	}{
		{"/v1/properties/demo/chats", "application/json", 6291000, nil},
		{"/v1/chats/" + id + "/messages", "application/json", MaxBodyBytes, auth},
		{"/v1/chats/" + id + "/files", "multipart/form-data; boundary=xyz", MaxUploadBytes, auth},
		{"/hook", "application/json", callbackBodyBytes, nil},
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		k := kinds[i%len(kinds)]
		conns = append(conns, announce(t, addr, "POST", k.path, k.ctype, k.length, 1000, k.headers...))
	}
	// Every connection has been accepted and has sent its 1 KB when the
	// server answers one more request after them.
	if r, err := rawGet(t, addr, "/healthz"); err != nil || r.code != 200 {
		t.Fatalf("healthz: %v %d", err, r.code)
	}
	time.Sleep(200 * time.Millisecond) // let the server's reads of the last ones land
	heap1, rss1 := heapInuse(), rss()
	t.Logf("%d connections announcing large bodies, 1 KB sent each: heap in use %.1f MB -> %.1f MB (+%.1f MB), RSS %.1f MB -> %.1f MB (+%.1f MB)",
		n, mb(heap0), mb(heap1), mb(heap1)-mb(heap0), mb(rss0), mb(rss1), mb(rss1)-mb(rss0))
	if heap1 > heap0 && heap1-heap0 > 200<<20 {
		t.Errorf("heap grew by %.1f MB, want under 200 MB", mb(heap1-heap0))
	}
	if rss1 > 200<<20 {
		t.Errorf("RSS %.1f MB, want under 200 MB", mb(rss1))
	}
	// The ones over their route's limit were answered at once.
	if r := readResp(t, conns[0]); r.code != 413 {
		t.Errorf("6 MB announced: %d %s", r.code, r.body)
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// TestKeepAliveAfterBody: a body read in full leaves the connection usable
// for the next request; one left unread (refused) closes it.
func TestKeepAliveAfterBody(t *testing.T) {
	e := newEnv(t)
	addr := strings.TrimPrefix(e.serve(), "http://")
	id, tok := e.startChat(propDemo, "hi")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"text":"` + strings.Repeat("a", 3000) + `"}`
	req := fmt.Sprintf("POST /v1/chats/%s/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", id, tok, len(body), body)
	br := bufio.NewReader(c)
	for i := range 3 {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one connection: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 202 || res.Close {
			t.Fatalf("request %d: %d close=%v", i, res.StatusCode, res.Close)
		}
	}
	if n := len(e.chats.Messages(bridge.ChatID(id))); n != 4 {
		t.Errorf("%d messages, want 4", n)
	}
}
