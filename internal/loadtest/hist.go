package loadtest

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits a histogram keeps per power of two:
// every recorded value is within 1/2^subBits (under 1%) of its bucket.
const subBits = 7

// histBuckets covers values up to 2^40 ns (about 18 minutes).
const histBuckets = (40 - subBits + 1) << subBits

// Histogram records durations in log-linear buckets: constant memory and no
// allocation per sample, so a load goroutine can keep its own and the
// results are merged at the end. The zero value is ready to use; it is not
// safe for concurrent use.
type Histogram struct {
	counts [histBuckets]uint32
	n      uint64
	sum    float64
	max    time.Duration
}

func bucketOf(ns uint64) int {
	if ns < 1<<subBits {
		return int(ns)
	}
	exp := bits.Len64(ns) - 1 - subBits // ≥ 0
	i := (exp+1)<<subBits | int(ns>>uint(exp))&(1<<subBits-1)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketValue is the upper bound of bucket i, in ns.
func bucketValue(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	exp := i>>subBits - 1
	m := uint64(i&(1<<subBits-1) | 1<<subBits)
	return (m+1)<<uint(exp) - 1
}

// Record adds one sample; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.sum += float64(d)
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average sample (zero without samples).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the smallest bucket bound at or under which a fraction
// q of the samples lie (never more than Max). Zero without samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(time.Duration(bucketValue(i)), h.max)
		}
	}
	return h.max
}

// Latency summarizes a histogram in milliseconds, as reported.
type Latency struct {
	Count  uint64  `json:"count"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary is h in milliseconds.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.n,
		P50ms: ms(h.Quantile(0.50)), P99ms: ms(h.Quantile(0.99)), P999ms: ms(h.Quantile(0.999)),
		MaxMs: ms(h.max),
	}
}
