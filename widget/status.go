package widget

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/presence"
)

// HeaderStale marks a status served while the watcher has lost Redis.
const HeaderStale = "X-Onduty-Stale"

// status answers GET /v1/properties/{p}/status from the watcher's prebuilt
// snapshot. This is the hot path: no Redis, no encoding, no allocation
// beyond Fiber's own.
func (va *visitorAPI) status(c *fiber.Ctx) error {
	p := presence.PropertyID(c.Params("p"))
	hs := va.statuses.get(p)
	if hs == nil {
		return errUnknownProperty
	}
	if _, err := va.cors.property(c, p); err != nil {
		return err
	}
	h := &c.Response().Header
	h.SetCanonical(keyETag, hs.etag)
	h.SetCanonical(keyCacheControl, valNoCache)
	if va.watcher.Stale() {
		h.SetCanonical(keyStale, valTrue)
	}
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), hs.snap.ETag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	h.SetContentTypeBytes(valJSON)
	return c.Send(hs.body)
}

// Canonical header keys and values of the hot path, set without Fiber's
// normalising Set.
var (
	keyETag         = []byte(fiber.HeaderETag)
	keyCacheControl = []byte(fiber.HeaderCacheControl)
	keyStale        = []byte(HeaderStale)
	valNoCache      = []byte("no-cache")
	valTrue         = []byte("true")
	valJSON         = []byte(fiber.MIMEApplicationJSON)
)

// hot is a property's current snapshot with what is sent of it, encoded
// once per snapshot: the ETag as bytes, the status body (GET .../status and
// the visitor stream's status event) and the status stream's event.
type hot struct {
	snap  *presence.Snapshot
	etag  []byte
	body  []byte
	event []byte
}

// newHot encodes snap once for every client: the status body is the one
// place that decides what a widget status looks like on the wire.
func newHot(snap *presence.Snapshot) *hot {
	body := snap.Body
	return &hot{snap: snap, etag: []byte(snap.ETag), body: body, event: statusEvent(snap.ETag, body)}
}

// statusEvent is the status stream's event for body: its id is the ETag,
// so a reconnecting EventSource sends it back as Last-Event-ID and is not
// sent a status it has.
func statusEvent(etag string, body []byte) []byte {
	return appendEvent(nil, "status", etag, body)
}

// hotStatuses caches each property's hot status, read without a lock (the
// map's keys are fixed at start).
type hotStatuses struct {
	watcher *presence.Watcher
	m       map[presence.PropertyID]*atomic.Pointer[hot]
}

func newHotStatuses(watcher *presence.Watcher, props []presence.PropertyID) *hotStatuses {
	hs := &hotStatuses{watcher: watcher, m: make(map[presence.PropertyID]*atomic.Pointer[hot], len(props))}
	for _, p := range props {
		hs.m[p] = new(atomic.Pointer[hot])
	}
	return hs
}

// get returns p's current snapshot, refreshing the cached ETag bytes
// when the watcher has published a new one; nil for an unknown property.
func (hs *hotStatuses) get(p presence.PropertyID) *hot {
	ptr, ok := hs.m[p]
	if !ok {
		return nil
	}
	snap, _ := hs.watcher.Snapshot(p)
	if snap == nil {
		return nil
	}
	h := ptr.Load()
	if h == nil || h.snap != snap {
		h = newHot(snap)
		ptr.Store(h)
	}
	return h
}

// etagMatch reports whether an If-None-Match header names etag.
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	if header == etag || header == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// statusStream answers GET /v1/properties/{p}/status/stream: a status event
// now (unless Last-Event-ID, last_event_id or If-None-Match names the
// current ETag) and at every change, heartbeats in between. The stream is
// held by the status hub, with no goroutine of its own.
func (va *visitorAPI) statusStream(c *fiber.Ctx) error {
	p := presence.PropertyID(strings.Clone(c.Params("p")))
	if snap, ok := va.watcher.Snapshot(p); !ok || snap == nil {
		return errUnknownProperty
	}
	cr, err := va.cors.property(c, p)
	if err != nil {
		return err
	}
	last := c.Get("Last-Event-ID")
	if last == "" {
		last = c.Query("last_event_id")
	}
	last = strings.Clone(last)
	inm := strings.Clone(c.Get(fiber.HeaderIfNoneMatch))
	resume := func(etag string) bool { return etagMatch(last, etag) || etagMatch(inm, etag) }
	return va.streams.hold(c, p, cr, resume)
}

// statusSent is the widget status a visitor stream last sent (its ETag).
type statusSent struct{ etag string }

// send writes p's status event unless the stream already has it, and returns
// the channel closed at the next change of the widget status. The channel is
// taken before the snapshot, so no change falls in between.
func (st *statusSent) send(va *visitorAPI, w *sseConn, p presence.PropertyID) (<-chan struct{}, error) {
	changed := va.watcher.StatusChanged(p)
	if hs := va.statuses.get(p); hs != nil && hs.snap.ETag != st.etag {
		if err := w.event("status", "", hs.body); err != nil {
			return nil, err
		}
		st.etag = hs.snap.ETag
	}
	return changed, nil
}
