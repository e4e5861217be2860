package loadtest

import (
	"context"
	"time"
)

// statusLoad loads GET /status on onduty (and bare Fiber when bare is set)
// at each connection count, alternating the two so that both see the same
// machine. rt, when set, counts onduty's Redis round trips.
func statusLoad(ctx context.Context, cfg *Config, onduty endpoint, bare *endpoint, property string, rt func() rtSnapshot, rep *Report) error {
	path := "/v1/properties/" + property + "/status"
	warm := min(cfg.Duration/4, time.Second)
	var requests uint64
	var before rtSnapshot
	if rt != nil {
		before = rt()
	}
	for _, conns := range cfg.Conns {
		if bare == nil {
			cfg.progress("status: onduty, %d connections, %s", conns, cfg.Duration)
			r, err := runLoad(ctx, onduty, onduty.getRequest(path, ""), conns, warm, cfg.Duration)
			if err != nil {
				return err
			}
			requests += r.Total + r.Errors
			rep.Status = append(rep.Status, statusRow("onduty", conns, r))
			continue
		}
		// A-B-B-A in halves, so that a machine whose load drifts (other
		// processes) weighs on both servers alike.
		cfg.progress("status: onduty and bare Fiber, %d connections, %s each", conns, cfg.Duration)
		var on, bf loadResult
		half := cfg.Duration / 2
		for _, step := range []struct {
			ep  endpoint
			acc *loadResult
		}{{onduty, &on}, {*bare, &bf}, {*bare, &bf}, {onduty, &on}} {
			r, err := runLoad(ctx, step.ep, step.ep.getRequest(path, ""), conns, min(warm, half/2), half)
			if err != nil {
				return err
			}
			step.acc.add(r)
		}
		requests += on.Total + on.Errors
		row, brow := statusRow("onduty", conns, &on), statusRow("bare_fiber", conns, &bf)
		rep.Status = append(rep.Status, row, brow)
		ratio := StatusRatio{Conns: conns}
		if brow.RPS > 0 {
			ratio.Throughput = round2(row.RPS / brow.RPS)
		}
		if brow.Latency.P99ms > 0 {
			ratio.P99 = round2(row.Latency.P99ms / brow.Latency.P99ms)
		}
		rep.Ratios = append(rep.Ratios, ratio)
	}
	if rt != nil {
		// Warm-up requests count too: all of them went through the handler.
		n := float64(rt().sub(before)[originRequest])
		per := 0.0
		if requests > 0 {
			per = n / float64(requests)
		}
		per = float64(int64(per*1e4+0.5)) / 1e4
		rep.roundTrips().PerStatusRequest = &per
	}
	return nil
}

func statusRow(server string, conns int, r *loadResult) StatusRow {
	return StatusRow{Server: server, Conns: conns, RPS: round2(r.RPS()), Requests: r.Requests, Errors: r.Errors, Latency: r.Lat.Summary()}
}
