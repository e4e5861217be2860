package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestCallTellsUncertainFailures: Call bounds one request with the delivery
// timeout carried by ctx, and says a failure may have reached the platform
// only when the request was written out and no answer came.
func TestCallTellsUncertainFailures(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "ok")
		case "/fail":
			http.Error(w, "down", http.StatusBadGateway)
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	get := func(url string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
			if err != nil {
				return err
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
	}
	ctx := withCallTimeout(context.Background(), 200*time.Millisecond)
	tests := []struct {
		name      string
		url       string
		wantErr   bool
		uncertain bool
	}{
		{"answered", srv.URL + "/ok", false, false},
		{"answered with an error", srv.URL + "/fail", true, false},
		{"never answered", srv.URL + "/hang", true, true},
		{"never connected", closed.URL + "/ok", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Call(ctx, get(tt.url))
			var u *UncertainError
			if (err != nil) != tt.wantErr || errors.As(err, &u) != tt.uncertain {
				t.Errorf("Call = %v; want error %v, uncertain %v", err, tt.wantErr, tt.uncertain)
			}
		})
	}
	// The timeout is the outbox's, counted from the call: a pacing wait
	// before it takes nothing from the request.
	err := Call(ctx, func(ctx context.Context) error {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > 200*time.Millisecond {
			return fmt.Errorf("deadline in %v (set %v), want within 200ms", time.Until(dl), ok)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
