package redistest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestDumpLoad writes one key of each type under a prefix, dumps it, loads
// the dump under another prefix and dumps that: the same keys, types,
// values (stream field order included) and times to live come back, and
// keys outside the prefix are left out.
func TestDumpLoad(t *testing.T) {
	r := New(t)
	ctx := context.Background()
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name  string
		write func(p redis.Pipeliner, key string)
		ttl   time.Duration // 0: none
		want  Entry
	}{
		{"string", func(p redis.Pipeliner, k string) { p.Set(ctx, k, "chat-1", 0) }, time.Hour,
			Entry{Type: "string", String: str("chat-1")}},
		{"empty string without expiry", func(p redis.Pipeliner, k string) { p.Set(ctx, k, "", 0) }, 0,
			Entry{Type: "string", String: str("")}},
		{"hash", func(p redis.Pipeliner, k string) { p.HSet(ctx, k, "-100:7", "", "111:3", "alice") }, 7 * 24 * time.Hour,
			Entry{Type: "hash", Hash: map[string]string{"-100:7": "", "111:3": "alice"}}},
		{"set", func(p redis.Pipeliner, k string) { p.SAdd(ctx, k, "b", "a", "c") }, time.Hour,
			Entry{Type: "set", Set: []string{"a", "b", "c"}}},
		{"zset", func(p redis.Pipeliner, k string) {
			p.ZAdd(ctx, k, redis.Z{Member: "late", Score: 1.7e12 + 0.5}, redis.Z{Member: "early", Score: -3})
		}, 0, Entry{Type: "zset", ZSet: []ZMember{{"early", -3}, {"late", 1.7e12 + 0.5}}}},
		{"list", func(p redis.Pipeliner, k string) { p.RPush(ctx, k, "z", "a", "z") }, time.Hour,
			Entry{Type: "list", List: []string{"z", "a", "z"}}},
		{"stream", func(p redis.Pipeliner, k string) {
			p.XAdd(ctx, &redis.XAddArgs{Stream: k, ID: "5-1", Values: []string{"m", `{"text":"hi ü"}`}})
			p.XAdd(ctx, &redis.XAddArgs{Stream: k, ID: "9-0", Values: []string{"z", "1", "a", "2"}})
		}, time.Hour, Entry{Type: "stream", Stream: []StreamEntry{{"5-1", []string{"m", `{"text":"hi ü"}`}}, {"9-0", []string{"z", "1", "a", "2"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := r.Prefix+tc.name+":old:", r.Prefix+tc.name+":new:"
			if _, err := r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
				tc.write(p, from+"k")
				if tc.ttl > 0 {
					p.PExpire(ctx, from+"k", tc.ttl)
				}
				p.Set(ctx, r.Prefix+tc.name+":other", "not under the prefix", 0)
				p.Set(ctx, to+"k", "replaced by Load", 0)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			check := func(data []byte) {
				t.Helper()
				var got map[string]Entry
				if err := json.Unmarshal(data, &got); err != nil {
					t.Fatalf("%v in %s", err, data)
				}
				e, ok := got["k"]
				if len(got) != 1 || !ok {
					t.Fatalf("dumped %s, want the one key k", data)
				}
				switch {
				case tc.ttl == 0 && e.PTTL != -1:
					t.Errorf("pttl %d, want -1 (no expiry)", e.PTTL)
				case tc.ttl > 0 && (e.PTTL <= 0 || e.PTTL > tc.ttl.Milliseconds()):
					t.Errorf("pttl %d, want in (0, %d]", e.PTTL, tc.ttl.Milliseconds())
				}
				e.PTTL = 0
				if !reflect.DeepEqual(e, tc.want) {
					t.Errorf("dumped %+v, want %+v", e, tc.want)
				}
			}
			data, err := Dump(ctx, r.Client, from)
			if err != nil {
				t.Fatal(err)
			}
			check(data)
			if err := Load(ctx, r.Client, to, data); err != nil {
				t.Fatal(err)
			}
			again, err := Dump(ctx, r.Client, to)
			if err != nil {
				t.Fatal(err)
			}
			check(again)
		})
	}
}

// TestDumpRefuses: a value JSON cannot carry, or a type Load does not know,
// is an error rather than a silently wrong fixture.
func TestDumpRefuses(t *testing.T) {
	r := New(t)
	ctx := context.Background()
	if err := r.Client.Set(ctx, r.Prefix+"bin:k", "\xff\xfe", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Dump(ctx, r.Client, r.Prefix+"bin:"); err == nil {
		t.Error("Dump took a binary value")
	}
	for _, data := range []string{
		`{"k":{"type":"geo","pttl_ms":-1}}`,
		`{"k":{"type":"string","pttl_ms":-1}}`,
		`{"k":{"type":"stream","pttl_ms":-1,"stream":[{"id":"1-0","fields":["odd"]}]}}`,
		`not json`,
	} {
		if err := Load(ctx, r.Client, r.Prefix+"bad:", []byte(data)); err == nil {
			t.Errorf("Load took %s", data)
		}
	}
}
