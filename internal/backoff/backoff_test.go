package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, 200 * time.Millisecond},
		{1, 400 * time.Millisecond},
		{5, 6400 * time.Millisecond},
		{6, 10 * time.Second},
		{1000, 10 * time.Second}, // no overflow however long it fails
	}
	for _, tt := range tests {
		if got := p.Delay(tt.failures); got != tt.want {
			t.Errorf("Delay(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
}

func TestNext(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	var got []time.Duration
	d := time.Duration(0)
	for range 8 {
		d = p.Next(d)
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses = %v, want %v ms", got, want)
		}
	}
}

// TestSameSequence checks that a loop counting failures and one keeping its
// last pause wait the same.
func TestSameSequence(t *testing.T) {
	for _, p := range []Policy{{time.Second, time.Minute}, {5 * time.Millisecond, time.Second}} {
		d := time.Duration(0)
		for f := range 12 {
			d = p.Next(d)
			if want := p.Delay(f); d != want {
				t.Errorf("%+v after %d failures: Next gives %v, Delay %v", p, f, d, want)
			}
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep with a live context reported it was cut short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with a done context reported the hour passed")
	}
}
