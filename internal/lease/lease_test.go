package lease

import (
	"context"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
)

func TestLease(t *testing.T) {
	r := redistest.New(t)
	ctx := context.Background()
	key := r.Prefix + "lease"
	ttl := time.Minute
	steps := []struct {
		name  string
		do    func() (bool, error)
		want  bool
		owner string // who holds it afterwards ("" for nobody)
	}{
		{"renew of a free lease does not take it", func() (bool, error) { return Renew(ctx, r.Client, key, "a", ttl) }, false, ""},
		{"a takes the free lease", func() (bool, error) { return Acquire(ctx, r.Client, key, "a", ttl) }, true, "a"},
		{"b cannot take a's", func() (bool, error) { return Acquire(ctx, r.Client, key, "b", ttl) }, false, "a"},
		{"b cannot renew a's", func() (bool, error) { return Renew(ctx, r.Client, key, "b", ttl) }, false, "a"},
		{"a renews", func() (bool, error) { return Renew(ctx, r.Client, key, "a", ttl) }, true, "a"},
		{"a acquires again: a renewal", func() (bool, error) { return Acquire(ctx, r.Client, key, "a", ttl) }, true, "a"},
		{"b's release leaves a's", func() (bool, error) { return true, Release(ctx, r.Client, key, "b") }, true, "a"},
		{"a releases", func() (bool, error) { return true, Release(ctx, r.Client, key, "a") }, true, ""},
		{"b takes it", func() (bool, error) { return Acquire(ctx, r.Client, key, "b", ttl) }, true, "b"},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
		holder, _ := r.Client.Get(ctx, key).Result()
		if holder != s.owner {
			t.Fatalf("%s: held by %q, want %q", s.name, holder, s.owner)
		}
		if holder != "" {
			if d := r.Client.PTTL(ctx, key).Val(); d <= 0 || d > ttl {
				t.Fatalf("%s: ttl %v, want up to %v", s.name, d, ttl)
			}
		}
	}
}
