package widget

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onduty/onduty/internal/metrics"
)

// metricsHandler serves the process's metrics and the server's own
// registry (the collector's gauges), behind a bearer token when one is set.
func metricsHandler(reg *prometheus.Registry, token string, log *slog.Logger) http.Handler {
	h := promhttp.HandlerFor(prometheus.Gatherers{metrics.Registry, reg}, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"a bearer token is required for /metrics"}}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// routeMetrics caches one route's request counters by status code, so the
// hot path does no label hashing.
type routeMetrics struct {
	route string
	codes [600]atomic.Pointer[prometheus.Counter]
}

func (m *routeMetrics) inc(code int) {
	if code < 0 || code >= len(m.codes) {
		metrics.HTTPRequests.WithLabelValues(m.route, fmt.Sprint(code)).Inc()
		return
	}
	p := m.codes[code].Load()
	if p == nil {
		ctr := metrics.HTTPRequests.WithLabelValues(m.route, fmt.Sprint(code))
		p = &ctr
		m.codes[code].Store(p)
	}
	(*p).Inc()
}
