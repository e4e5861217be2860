package redistest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Entry is one Redis key as Dump records it: its type, its value in the
// field of that type, and its remaining time to live.
type Entry struct {
	Type string `json:"type"` // string, hash, set, zset, list or stream
	// PTTL is the time to live in milliseconds when dumped; -1: none.
	PTTL   int64             `json:"pttl_ms"`
	String *string           `json:"string,omitempty"`
	Hash   map[string]string `json:"hash,omitempty"`
	Set    []string          `json:"set,omitempty"` // sorted
	ZSet   []ZMember         `json:"zset,omitempty"`
	List   []string          `json:"list,omitempty"`
	Stream []StreamEntry     `json:"stream,omitempty"`
}

// ZMember is one member of a sorted set, in score order.
type ZMember struct {
	Member string  `json:"member"`
	Score  float64 `json:"score"`
}

// StreamEntry is one stream entry: its id and its fields and values in
// their order (field, value, field, value, …).
type StreamEntry struct {
	ID     string   `json:"id"`
	Fields []string `json:"fields"`
}

// Dump captures every key under prefix (SCAN prefix*) as JSON: an object
// from the key without the prefix to its Entry, keys sorted. Values must be
// UTF-8 text (JSON carries nothing else faithfully); a key of another type
// or with a binary value is an error naming it. A key that expires or is
// deleted while Dump reads it is left out. Stream consumer groups and a
// stream's last id beyond its last entry are not recorded.
func Dump(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]byte, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("redistest: dump: scan: %w", err)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key twice
	out := make(map[string]Entry, len(keys))
	for _, key := range keys {
		e, ok, err := dumpKey(ctx, rdb, key)
		if err != nil {
			return nil, fmt.Errorf("redistest: dump %s: %w", key, err)
		}
		if ok {
			out[strings.TrimPrefix(key, prefix)] = e
		}
	}
	return json.MarshalIndent(out, "", "  ")
}

// dumpKey reads one key; ok is false if it is gone.
func dumpKey(ctx context.Context, rdb redis.UniversalClient, key string) (e Entry, ok bool, err error) {
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		return e, false, err
	}
	e.Type = typ
	var texts []string
	switch typ {
	case "none":
		return e, false, nil
	case "string":
		s, err := rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return e, false, nil
		}
		e.String, texts = &s, []string{s}
	case "hash":
		e.Hash, err = rdb.HGetAll(ctx, key).Result()
		for k, v := range e.Hash {
			texts = append(texts, k, v)
		}
	case "set":
		e.Set, err = rdb.SMembers(ctx, key).Result()
		slices.Sort(e.Set)
		texts = e.Set
	case "zset":
		var zs []redis.Z
		zs, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		for _, z := range zs {
			m := fmt.Sprint(z.Member)
			e.ZSet = append(e.ZSet, ZMember{Member: m, Score: z.Score})
			texts = append(texts, m)
		}
	case "list":
		e.List, err = rdb.LRange(ctx, key, 0, -1).Result()
		texts = e.List
	case "stream":
		e.Stream, err = xrange(ctx, rdb, key)
		for _, se := range e.Stream {
			texts = append(texts, se.Fields...)
		}
	default:
		return e, false, fmt.Errorf("type %s is not supported", typ)
	}
	if err != nil {
		return e, false, err
	}
	if len(texts) == 0 { // expired between TYPE and the read
		return e, false, nil
	}
	for _, s := range texts {
		if !utf8.ValidString(s) {
			return e, false, errors.New("a value is not UTF-8 text")
		}
	}
	pttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil {
		return e, false, err
	}
	switch {
	case pttl == -2: // gone meanwhile (go-redis keeps -1 and -2 as they are)
		return e, false, nil
	case pttl < 0:
		e.PTTL = -1
	default:
		e.PTTL = max(pttl.Milliseconds(), 1)
	}
	return e, true, nil
}

// xrange reads a whole stream keeping each entry's field order (go-redis's
// XRange gives the fields as a map).
func xrange(ctx context.Context, rdb redis.UniversalClient, key string) ([]StreamEntry, error) {
	raw, err := rdb.Do(ctx, "XRANGE", key, "-", "+").Slice()
	if err != nil {
		return nil, err
	}
	out := make([]StreamEntry, 0, len(raw))
	for _, r := range raw {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("XRANGE: unexpected entry %v", r)
		}
		id, _ := pair[0].(string)
		kv, _ := pair[1].([]any)
		fields := make([]string, len(kv))
		for i, v := range kv {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("XRANGE: unexpected field %v", v)
			}
			fields[i] = s
		}
		out = append(out, StreamEntry{ID: id, Fields: fields})
	}
	return out, nil
}

// Load writes what Dump returned under prefix, replacing any key of the same
// name, each with the time to live it had when dumped (counted from now).
func Load(ctx context.Context, rdb redis.UniversalClient, prefix string, data []byte) error {
	var in map[string]Entry
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("redistest: load: %w", err)
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	slices.Sort(names)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, name := range names {
			if err := loadKey(ctx, p, prefix+name, in[name]); err != nil {
				return fmt.Errorf("redistest: load %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redistest: load: %w", err)
	}
	return nil
}

// loadKey queues the commands writing one key on p.
func loadKey(ctx context.Context, p redis.Pipeliner, key string, e Entry) error {
	p.Del(ctx, key)
	switch e.Type {
	case "string":
		if e.String == nil {
			return errors.New("string without a value")
		}
		p.Set(ctx, key, *e.String, 0)
	case "hash":
		if len(e.Hash) == 0 {
			return errors.New("empty hash")
		}
		p.HSet(ctx, key, e.Hash)
	case "set":
		if len(e.Set) == 0 {
			return errors.New("empty set")
		}
		p.SAdd(ctx, key, anys(e.Set)...)
	case "zset":
		if len(e.ZSet) == 0 {
			return errors.New("empty sorted set")
		}
		zs := make([]redis.Z, len(e.ZSet))
		for i, z := range e.ZSet {
			zs[i] = redis.Z{Member: z.Member, Score: z.Score}
		}
		p.ZAdd(ctx, key, zs...)
	case "list":
		if len(e.List) == 0 {
			return errors.New("empty list")
		}
		p.RPush(ctx, key, anys(e.List)...)
	case "stream":
		if len(e.Stream) == 0 {
			return errors.New("empty stream")
		}
		for _, se := range e.Stream {
			if len(se.Fields) == 0 || len(se.Fields)%2 != 0 {
				return fmt.Errorf("stream entry %s: %d fields and values", se.ID, len(se.Fields))
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: se.ID, Values: se.Fields})
		}
	default:
		return fmt.Errorf("type %q is not supported", e.Type)
	}
	if e.PTTL > 0 {
		p.PExpire(ctx, key, time.Duration(e.PTTL)*time.Millisecond)
	}
	return nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
