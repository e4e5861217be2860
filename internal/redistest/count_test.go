package redistest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestCounterAnyDatabase: a connection's set-up (HELLO, SELECT of a non-zero
// database, CLIENT SETNAME) is not a round trip of the code under test, on
// whatever database the client uses.
func TestCounterAnyDatabase(t *testing.T) {
	r := New(t)
	for _, tc := range []struct {
		name string
		db   int
		cn   string
	}{
		{"db 0", 0, ""},
		{"db 3", 3, ""},
		{"db 5 with a client name", 5, "onduty-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := redis.ParseURL(r.URL)
			if err != nil {
				t.Fatal(err)
			}
			o.DB, o.ClientName = tc.db, tc.cn
			if r.Embedded != nil {
				o.Protocol = 2
			}
			c := redis.NewClient(o)
			t.Cleanup(func() { c.Close() })
			var n Counter
			c.AddHook(&n)
			ctx := context.Background()
			key := r.Prefix + "counter"
			t.Cleanup(func() { c.Del(context.Background(), key) })
			if err := c.Set(Mark(ctx), key, "v", 0).Err(); err != nil { // opens the connection
				t.Fatal(err)
			}
			if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Get(ctx, key)
				p.Select(ctx, tc.db) // a pipeline the code sends itself counts
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if all, marked := n.All.Load(), n.Marked.Load(); all != 2 || marked != 1 {
				t.Errorf("counted %d round trips (%d marked), want 2 (1 marked)", all, marked)
			}
		})
	}
}
