package widget

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// statusHub holds the open status streams of every property. A held
// stream is only its connection: fasthttp keeps a hijacked connection open
// after the hijack handler returns (KeepHijackedConns, set by New), and the hub
// keeps it in its property's list, with no goroutine, timer or buffer of
// its own.
//
// One goroutine per property waits for the widget status to change; the
// status event is encoded once per snapshot (hot.event) and the same bytes
// are written to every held connection of the property by a few writer
// goroutines that share the list (fanOut). A connection whose write fails
// or does not finish within the write timeout is closed and forgotten: the
// widget reconnects with Last-Event-ID and gets the status then. One ticker
// writes the heartbeats of every held connection the same way, a tenth of
// them at each tenth of the period; that is also how a gone client is
// noticed (there is no reader).
//
// Changes of one property are written one after the other, so a stream
// never sees an older status after a newer one.
type statusHub struct {
	watcher   *presence.Watcher
	statuses  *hotStatuses
	conns     *connTracker
	heartbeat time.Duration
	writers   int
	timeout   time.Duration
	sets      map[presence.PropertyID]*heldSet // fixed keys: read without a lock
	closed    atomic.Bool
}

// heldSet is one property's held status streams.
type heldSet struct {
	p    presence.PropertyID
	mu   sync.Mutex
	list []*heldConn
	last string // ETag of the status last written to the whole list
}

// heldConn is one held status stream.
type heldConn struct {
	conn net.Conn
	ip   string // the key of the per-IP stream cap
	set  *heldSet
	idx  int // position in set.list, -1 once dropped; under set.mu
	// sent is the ETag of the status event the stream last got. Written at
	// registration and by the property's broadcast, which are serialised.
	sent string
}

// fanOutBatch is how many connections a writer takes from the shared list
// at a time.
const fanOutBatch = 64

// Heartbeat comment of a held stream.
var heartbeat = []byte(": keep-alive\n\n")

// newStatusHub holds the status streams of props; timeout bounds one
// write to a held stream.
func newStatusHub(watcher *presence.Watcher, statuses *hotStatuses, conns *connTracker, props []presence.PropertyID, heartbeat, timeout time.Duration) *statusHub {
	h := &statusHub{
		watcher:   watcher,
		statuses:  statuses,
		conns:     conns,
		heartbeat: heartbeat,
		writers:   max(4, runtime.GOMAXPROCS(0)),
		timeout:   timeout,
		sets:      make(map[presence.PropertyID]*heldSet, len(props)),
	}
	for _, p := range props {
		h.sets[p] = &heldSet{p: p}
	}
	return h
}

// start runs one broadcaster per property and the heartbeat ticker until
// stop is closed; wg counts them.
func (h *statusHub) start(stop <-chan struct{}, wg *sync.WaitGroup) {
	for _, set := range h.sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.follow(set, stop)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// One tick in heartbeatSlices of the period writes to that share
		// of the streams, so the heartbeats of many streams do not come as
		// one burst that a change would have to wait behind.
		t := time.NewTicker(max(h.heartbeat/heartbeatSlices, time.Millisecond))
		defer t.Stop()
		for k := 0; ; k = (k + 1) % heartbeatSlices {
			select {
			case <-t.C:
				for _, set := range h.sets {
					h.fanOut(set.share(k, heartbeatSlices), heartbeat, "")
				}
			case <-stop:
				return
			}
		}
	}()
}

// heartbeatSlices is how many ticks a heartbeat period is written in.
const heartbeatSlices = 10

// follow writes set's status at every change of the widget status. The
// channel is taken before the snapshot, so no change falls in between.
func (h *statusHub) follow(set *heldSet, stop <-chan struct{}) {
	for {
		changed := h.watcher.StatusChanged(set.p)
		if hs := h.statuses.get(set.p); hs != nil {
			set.mu.Lock()
			var list []*heldConn
			if hs.snap.ETag != set.last {
				list = append(list, set.list...)
				set.last = hs.snap.ETag
			}
			set.mu.Unlock()
			if len(list) > 0 {
				began := time.Now()
				h.fanOut(list, hs.event, hs.snap.ETag)
				metrics.StatusFanOut.Observe(time.Since(began).Seconds())
			}
		}
		select {
		case <-changed:
		case <-stop:
			return
		}
	}
}

// hold keeps conn as a status stream of p: it writes the response head
// and, unless the client already has it (resume names its ETag), the
// current status, then adds conn to the property's list. It reports false
// (and writes nothing more) when the hub is closed or the write failed; the
// caller then closes conn and gives its slot back. Registration and the
// first write happen under the list's lock, so a change broadcast at the
// same time either finds the stream already holding the new status or
// writes it.
func (h *statusHub) hold(conn net.Conn, p presence.PropertyID, ip string, head []byte, resume func(etag string) bool) bool {
	set := h.sets[p]
	if set == nil {
		return false
	}
	hc := &heldConn{conn: conn, ip: ip, set: set}
	set.mu.Lock()
	defer set.mu.Unlock()
	hs := h.statuses.get(p)
	if hs == nil || h.closed.Load() {
		return false
	}
	b := head
	if !resume(hs.snap.ETag) {
		b = append(append(make([]byte, 0, len(head)+len(hs.event)), head...), hs.event...)
	}
	// Counted before the client can see its stream open.
	h.conns.opened("status")
	if h.write(hc, b) != nil {
		h.conns.closed("status")
		return false
	}
	hc.sent = hs.snap.ETag
	hc.idx = len(set.list)
	set.list = append(set.list, hc)
	return true
}

// share copies every n-th held connection from the i-th on. A stream
// moved in the list by a removal may get one heartbeat more or less in a
// period; a heartbeat only has to come now and then.
func (set *heldSet) share(i, n int) []*heldConn {
	set.mu.Lock()
	defer set.mu.Unlock()
	var out []*heldConn
	for ; i < len(set.list); i += n {
		out = append(out, set.list[i])
	}
	return out
}

// snapshot copies the list of held connections.
func (set *heldSet) snapshot() []*heldConn {
	set.mu.Lock()
	defer set.mu.Unlock()
	return append([]*heldConn(nil), set.list...)
}

// fanOut writes data to every connection of list with h.writers
// goroutines taking batches from the shared list, so a slow connection
// holds up one writer, not the rest of a fixed share. A non-empty etag
// marks a status event: connections that have it already are skipped.
func (h *statusHub) fanOut(list []*heldConn, data []byte, etag string) {
	if len(list) == 0 {
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	n := min(h.writers, (len(list)+fanOutBatch-1)/fanOutBatch)
	work := func() {
		for {
			i := int(next.Add(fanOutBatch)) - fanOutBatch
			if i >= len(list) {
				return
			}
			for _, hc := range list[i:min(i+fanOutBatch, len(list))] {
				if etag != "" && hc.sent == etag {
					continue
				}
				if err := h.write(hc, data); err != nil {
					h.drop(hc, true)
					continue
				}
				if etag != "" {
					hc.sent = etag
				}
			}
		}
	}
	for range n - 1 {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
}

// write writes b whole to hc within the write timeout.
func (h *statusHub) write(hc *heldConn, b []byte) error {
	if err := hc.conn.SetWriteDeadline(time.Now().Add(h.timeout)); err != nil {
		return err
	}
	_, err := hc.conn.Write(b)
	return err
}

// drop closes hc and gives its slots back, once; failed says a write
// failed or timed out (counted), else the server is stopping.
func (h *statusHub) drop(hc *heldConn, failed bool) {
	set := hc.set
	set.mu.Lock()
	if hc.idx < 0 {
		set.mu.Unlock()
		return
	}
	last := len(set.list) - 1
	set.list[hc.idx] = set.list[last]
	set.list[hc.idx].idx = hc.idx
	set.list[last] = nil
	set.list = set.list[:last]
	hc.idx = -1
	set.mu.Unlock()
	h.release(hc, failed)
}

func (h *statusHub) release(hc *heldConn, failed bool) {
	_ = hc.conn.Close()
	h.conns.release(hc.ip)
	h.conns.closed("status")
	if failed {
		metrics.StreamsDropped.Inc()
	}
}

// close ends every held stream; no stream is held after it.
func (h *statusHub) close() {
	h.closed.Store(true)
	for _, set := range h.sets {
		set.mu.Lock()
		list := set.list
		set.list = nil
		for _, hc := range list {
			hc.idx = -1
		}
		set.mu.Unlock()
		for _, hc := range list {
			h.release(hc, false)
		}
	}
}

// held is the number of status streams the hub holds.
func (h *statusHub) held() int {
	n := 0
	for _, set := range h.sets {
		set.mu.Lock()
		n += len(set.list)
		set.mu.Unlock()
	}
	return n
}
