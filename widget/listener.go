package widget

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onduty/onduty/internal/backoff"
	"github.com/onduty/onduty/internal/metrics"
)

// acceptBackoff paces a failing Accept: from 5ms doubling to 1s while the
// errors last.
var acceptBackoff = backoff.Policy{Min: 5 * time.Millisecond, Max: time.Second}

const (
	// refusalWriteTimeout bounds writing the 429 to a connection over its
	// IP's cap: a peer that does not read is simply closed.
	refusalWriteTimeout = 100 * time.Millisecond
)

// guardedListener is the server's listener: an Accept that fails (out of
// file descriptors, EMFILE/ENFILE, or any other error but the listener
// being closed) backs off and tries again instead of ending the server,
// and a connection from an IP (an IPv6 /64) that already holds perIP
// connections is answered 429 and closed.
//
// fasthttp retries a failed Accept only when the error is a timeout; any
// other error ends its serve loop, which ended the process.
type guardedListener struct {
	net.Listener
	log     *slog.Logger
	perIP   int                   // <= 0: no cap
	exempt  func(netip.Addr) bool // peers not capped (trusted proxies)
	retryIn int                   // Retry-After of the 429, seconds
	sleep   func(time.Duration)

	mu      sync.Mutex
	byIP    map[netip.Addr]int
	lastLog time.Time
	quiet   int // errors not logged since lastLog
}

func newGuardedListener(ln net.Listener, perIP int, exempt func(netip.Addr) bool, log *slog.Logger) *guardedListener {
	return &guardedListener{Listener: ln, log: log, perIP: perIP, exempt: exempt, retryIn: 5, sleep: time.Sleep, byIP: make(map[netip.Addr]int)}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
				return nil, err
			}
			metrics.AcceptErrors.Inc()
			wait = acceptBackoff.Next(wait)
			l.logError(err, wait)
			l.sleep(wait)
			continue
		}
		wait = 0
		if l.perIP <= 0 {
			return c, nil
		}
		ip := peerAddr(c.RemoteAddr())
		if !ip.IsValid() || (l.exempt != nil && l.exempt(ip)) {
			return c, nil
		}
		key := capKey(ip)
		if !l.register(key) {
			metrics.ConnectionsRefused.Inc()
			l.refuse(c)
			continue
		}
		return &perIPConn{Conn: c, l: l, ip: key}, nil
	}
}

// logError logs an accept error at most once a second, with the number of
// errors not logged since the last line.
func (l *guardedListener) logError(err error, backoff time.Duration) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.lastLog) < time.Second {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet
	l.lastLog, l.quiet = now, 0
	l.mu.Unlock()
	l.log.Warn("accept failed, retrying", "err", err, "backoff", backoff, "not_logged", quiet)
}

func (l *guardedListener) register(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP[ip] >= l.perIP {
		return false
	}
	l.byIP[ip]++
	return true
}

func (l *guardedListener) unregister(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// refuse answers 429 with Retry-After and closes c. It runs on the accept
// goroutine, so the write is bounded by a short deadline.
func (l *guardedListener) refuse(c net.Conn) {
	body := `{"error":{"code":"too_many_connections","message":"too many connections from your address, try again later"}}`
	_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	_, _ = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\n"+
		"Retry-After: "+strconv.Itoa(l.retryIn)+"\r\n"+
		"Content-Type: application/json; charset=utf-8\r\n"+
		"Cache-Control: no-store\r\n"+
		"Connection: close\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	_ = c.Close()
}

// perIPConn gives its IP's slot back when closed (once).
type perIPConn struct {
	net.Conn
	l      *guardedListener
	ip     netip.Addr
	closed atomic.Bool
}

func (c *perIPConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.unregister(c.ip)
	}
	return c.Conn.Close()
}

// capKey is what the per-IP cap counts: an IPv4 address, or an IPv6
// address's /64 (one host, or one customer, usually holds a whole /64).
func capKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// peerAddr is the IP of a connection's remote address (IPv4-mapped
// addresses unmapped), or the zero Addr.
func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
