package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// endpoint is an HTTP server the load test talks to (plain HTTP only).
type endpoint struct {
	addr string // host:port to dial
	host string // Host header
}

func parseEndpoint(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return endpoint{}, fmt.Errorf("loadtest: target %q is not a URL like http://host:8080", raw)
	}
	if u.Scheme != "http" {
		return endpoint{}, fmt.Errorf("loadtest: target %q: only http:// is supported (measure the server, not TLS)", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return endpoint{addr: addr, host: u.Host}, nil
}

func (e endpoint) url() string { return "http://" + e.host }

// getRequest is a keep-alive GET of path with extra header lines.
func (e endpoint) getRequest(path, headers string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + e.host + "\r\nUser-Agent: onduty-loadtest\r\n" + headers + "\r\n")
}

var dialer = net.Dialer{Timeout: 5 * time.Second}

// loadResult is one closed-loop load run.
type loadResult struct {
	Requests uint64 // measured (after the warm-up)
	Total    uint64 // answered with 200, warm-up included
	Errors   uint64 // failed requests and non-200 answers, warm-up included
	Window   time.Duration
	Lat      Histogram
}

// add merges another run of the same load into r.
func (r *loadResult) add(o *loadResult) {
	r.Requests += o.Requests
	r.Total += o.Total
	r.Errors += o.Errors
	r.Window += o.Window
	r.Lat.Merge(&o.Lat)
}

// RPS is the measured requests per second.
func (r *loadResult) RPS() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Window.Seconds()
}

// runLoad keeps conns keep-alive connections busy with req, one request in
// flight on each, for warm then dur; only requests started after the
// warm-up are measured. Every connection first connects, then all start.
func runLoad(ctx context.Context, ep endpoint, req []byte, conns int, warm, dur time.Duration) (*loadResult, error) {
	cs := make([]net.Conn, conns)
	var wg sync.WaitGroup
	var dialErr atomic.Pointer[error]
	sem := make(chan struct{}, 64)
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialer.DialContext(ctx, "tcp", ep.addr)
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			cs[i] = c
		}()
	}
	wg.Wait()
	if p := dialErr.Load(); p != nil {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("loadtest: connect %s: %w", ep.addr, *p)
	}

	from := time.Now().Add(warm)
	end := from.Add(dur)
	var stop atomic.Bool
	stopWatch := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-stopWatch:
		}
	}()
	defer close(stopWatch)

	res := &loadResult{Window: dur}
	var mu sync.Mutex
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := new(Histogram)
			var n, total, errs uint64
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			conn := c
			br := bufio.NewReaderSize(conn, 4096)
			conn.SetDeadline(end.Add(10 * time.Second))
			for !stop.Load() {
				if conn == nil {
					var err error
					if conn, err = dialer.DialContext(ctx, "tcp", ep.addr); err != nil {
						errs++
						conn = nil
						time.Sleep(10 * time.Millisecond)
						if time.Now().After(end) {
							break
						}
						continue
					}
					conn.SetDeadline(end.Add(10 * time.Second))
					br.Reset(conn)
				}
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				_, err := conn.Write(req)
				if err == nil {
					err = resp.Read(br)
				}
				t1 := time.Now()
				if err != nil || resp.StatusCode() != 200 {
					errs++
					if err != nil || resp.ConnectionClose() {
						conn.Close()
						conn = nil
					}
					continue
				}
				total++
				if resp.ConnectionClose() {
					conn.Close()
					conn = nil
				}
				if !t0.Before(from) {
					h.Record(t1.Sub(t0))
					n++
				}
			}
			if conn != nil {
				conn.Close()
			}
			mu.Lock()
			res.Lat.Merge(h)
			res.Requests += n
			res.Total += total
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// sseStream is one server-sent event stream read from a raw connection.
type sseStream struct {
	conn net.Conn
	r    *bufio.Reader
}

// openSSE connects, asks for path and reads the response head; the stream
// is ready for next. headers are extra header lines ("Name: value\r\n").
func openSSE(ctx context.Context, ep endpoint, path, headers string) (*sseStream, error) {
	return openSSEVia(ctx, &dialer, ep, path, headers)
}

// openSSEVia is openSSE with d (a source address, say).
func openSSEVia(ctx context.Context, d *net.Dialer, ep endpoint, path, headers string) (*sseStream, error) {
	c, err := d.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		return nil, fmt.Errorf("loadtest: stream: connect: %w", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(ep.getRequest(path, "Accept: text/event-stream\r\n"+headers)); err != nil {
		c.Close()
		return nil, fmt.Errorf("loadtest: stream: send: %w", err)
	}
	br := bufio.NewReaderSize(c, 1024)
	line, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("loadtest: stream %s: read head: %w", path, err)
	}
	if f := strings.Fields(line); len(f) < 2 || f[1] != "200" {
		c.Close()
		return nil, fmt.Errorf("loadtest: stream %s: %s", path, strings.TrimSpace(line))
	}
	chunked := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("loadtest: stream %s: read head: %w", path, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(k), "Transfer-Encoding") && strings.Contains(strings.ToLower(v), "chunked") {
			chunked = true
		}
	}
	c.SetDeadline(time.Time{})
	s := &sseStream{conn: c, r: br}
	if chunked { // behind a proxy
		s.r = bufio.NewReaderSize(httputil.NewChunkedReader(br), 1024)
	}
	return s, nil
}

// next reads the next event (comments, retry and id lines are skipped).
func (s *sseStream) next() (event, data string, err error) {
	var d strings.Builder
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if event != "" || d.Len() > 0 {
				if event == "" {
					event = "message"
				}
				return event, d.String(), nil
			}
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			if d.Len() > 0 {
				d.WriteByte('\n')
			}
			d.WriteString(strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
}

// waitFor reads events until one named name arrives, within d.
func (s *sseStream) waitFor(name string, d time.Duration) error {
	s.conn.SetReadDeadline(time.Now().Add(d))
	defer s.conn.SetReadDeadline(time.Time{})
	for {
		ev, _, err := s.next()
		if err != nil {
			return fmt.Errorf("loadtest: waiting for a %s event: %w", name, err)
		}
		if ev == name {
			return nil
		}
	}
}

// hold keeps the connection only: the reader and its buffer are dropped, so
// that an idle held stream costs the client as little as possible.
func (s *sseStream) hold() { s.r = nil }

func (s *sseStream) Close() error { return s.conn.Close() }
