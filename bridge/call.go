package bridge

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// DefaultDeliverTimeout bounds one platform request of a delivery when the
// outbox set no other.
const DefaultDeliverTimeout = 10 * time.Second

type callTimeoutKey struct{}

func withCallTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, callTimeoutKey{}, d)
}

// Call runs f, one request to a platform made while delivering, under the
// delivery timeout (Config.DeliverTimeout, carried by Deliver's ctx): the
// timeout covers the request alone, never the pacing wait before it.
//
// A failure is returned as an *UncertainError when the request may have
// reached the platform: the HTTP request (the last one f made with the ctx
// it is given) was written out completely, yet no response came back (a
// timeout, a connection reset). A failure before the request was written
// (no connection, ctx ended while pacing), or with the platform's answer
// (an error status, ok:false, 429), is returned as it is: the platform
// either never saw the request or said what it did with it.
func Call(ctx context.Context, f func(ctx context.Context) error) error {
	timeout, _ := ctx.Value(callTimeoutKey{}).(time.Duration)
	if timeout <= 0 {
		timeout = DefaultDeliverTimeout
	}
	var wrote, answered atomic.Bool
	trace := &httptrace.ClientTrace{
		// A call of several requests (an upload) is judged by its last.
		GetConn: func(string) {
			wrote.Store(false)
			answered.Store(false)
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
		GotFirstResponseByte: func() { answered.Store(true) },
	}
	cctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), timeout)
	defer cancel()
	err := f(cctx)
	if err != nil && wrote.Load() && !answered.Load() {
		return &UncertainError{Err: err}
	}
	return err
}
