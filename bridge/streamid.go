package bridge

import (
	"strconv"
	"strings"
	"time"
)

// StreamID is a message's id: the Redis stream id "ms-seq" under which the
// message was added to its chat's transcript.
type StreamID struct {
	MS, Seq uint64
}

// ParseStreamID parses a message id. A bare "ms" (which Redis reads as
// "ms-0" at the start of a range) is accepted only when partial is true:
// a client's "after" may be one, a stored message's id never is.
func ParseStreamID(s string, partial bool) (StreamID, bool) {
	a, c, full := strings.Cut(s, "-")
	if !full && !partial {
		return StreamID{}, false
	}
	ms, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return StreamID{}, false
	}
	var seq uint64
	if full {
		if seq, err = strconv.ParseUint(c, 10, 64); err != nil {
			return StreamID{}, false
		}
	}
	return StreamID{ms, seq}, true
}

// Less reports whether id comes before o in a transcript.
func (id StreamID) Less(o StreamID) bool {
	return id.MS < o.MS || id.MS == o.MS && id.Seq < o.Seq
}

// Time is when the entry was added (the id's millisecond part).
func (id StreamID) Time() time.Time {
	return time.UnixMilli(int64(id.MS))
}

// storedStreamID is the id Redis gave a stored entry; one that is not
// (never expected) counts as the first of all.
func storedStreamID(s string) StreamID {
	id, _ := ParseStreamID(s, true)
	return id
}
