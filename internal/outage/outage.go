// Package outage is a test double of a failing platform API: an HTTP handler
// that sits in front of a fake Telegram or Slack and, for a while, answers
// requests itself the way a failing platform does.
package outage

import (
	"net/http"
	"sync"
	"time"
)

// Modes of failure.
const (
	// ServerError: the platform answers 5xx.
	ServerError = "5xx"
	// RateLimited: the platform answers 429 and asks to retry after 1s.
	RateLimited = "429"
	// Timeout: the request hangs until the client gives up, or until the
	// outage ends and then 504; it never reaches the fake.
	Timeout = "timeout"
)

// Minute stands for "a minute" of outage in fault tests: long enough for the
// outbox's backoff and retry-after to run several times, short enough for CI.
const Minute = 3 * time.Second

// Proxy passes requests to Next, except during an outage.
type Proxy struct {
	// Next is the fake platform.
	Next http.Handler
	// Affects picks the requests an outage refuses; nil means all.
	Affects func(*http.Request) bool
	// Refuse writes the platform's own answer for ServerError and
	// RateLimited (status, headers, body).
	Refuse func(w http.ResponseWriter, mode string)

	mu    sync.Mutex
	mode  string
	until time.Time
	hits  int
}

// Start begins an outage of mode lasting d.
func (p *Proxy) Start(mode string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.until = mode, time.Now().Add(d)
}

// Over reports whether the outage has ended.
func (p *Proxy) Over() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().After(p.until)
}

// Refused is how many requests outages refused.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mode, left := p.mode, time.Until(p.until)
	on := left > 0 && (p.Affects == nil || p.Affects(r))
	if on {
		p.hits++
	}
	p.mu.Unlock()
	if !on {
		p.Next.ServeHTTP(w, r)
		return
	}
	if mode == Timeout {
		select {
		case <-r.Context().Done():
		case <-time.After(left): // the client outwaited the outage: a gateway timeout
			w.WriteHeader(http.StatusGatewayTimeout)
		}
		return
	}
	p.Refuse(w, mode)
}
