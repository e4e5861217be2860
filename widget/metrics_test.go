package widget

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetricsProtection: /metrics behind a token, or on its own address
// (and then not on the main one).
func TestMetricsProtection(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MetricsToken = "m3trics" })
		for _, tc := range []struct {
			name string
			auth []string
			want int
		}{
			{"none", nil, 401},
			{"wrong", []string{"Authorization", "Bearer nope"}, 401},
			{"a prefix", []string{"Authorization", "Bearer m3tric"}, 401},
			{"basic", []string{"Authorization", "Basic m3trics"}, 401},
			{"right", []string{"Authorization", "Bearer m3trics"}, 200},
		} {
			r := e.do("GET", "/metrics", nil, tc.auth...)
			if r.code != tc.want {
				t.Errorf("%s: %d %s", tc.name, r.code, r.body)
			}
			if tc.want == 200 && !strings.Contains(string(r.body), "onduty_http_requests_total") {
				t.Errorf("%s: no metrics in %.200s", tc.name, r.body)
			}
			if tc.want == 401 && (strings.Contains(string(r.body), "onduty_") || r.header.Get("WWW-Authenticate") == "") {
				t.Errorf("%s: %v %s", tc.name, r.header, r.body)
			}
		}
	})
	t.Run("own listener", func(t *testing.T) {
		ln := listen(t)
		maddr := ln.Addr().String()
		ln.Close() // the server listens there itself
		e := newEnv(t, func(c *Config) { c.MetricsListen = maddr; c.MetricsToken = "m3trics" })
		base := e.serve()
		res, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 404 {
			t.Errorf("main listener /metrics: %d", res.StatusCode)
		}
		get := func(tok string) (int, string) {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+maddr+"/metrics", nil)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		if code, body := get("m3trics"); code != 200 || !strings.Contains(body, "onduty_http_requests_total") {
			t.Errorf("metrics listener: %d %.200s", code, body)
		}
		if code, _ := get(""); code != 401 {
			t.Errorf("metrics listener without token: %d", code)
		}
	})
	t.Run("own listener address taken", func(t *testing.T) {
		ln := listen(t)
		defer ln.Close()
		e := newEnv(t, func(c *Config) { c.MetricsListen = ln.Addr().String() })
		main := listen(t)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		err := e.srv.Serve(ctx, main)
		if err == nil || !strings.Contains(err.Error(), "metrics") {
			t.Errorf("Serve: %v", err)
		}
		if _, err := net.DialTimeout("tcp", main.Addr().String(), time.Second); err == nil {
			t.Errorf("main listener left open")
		}
	})
}
