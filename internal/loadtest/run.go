package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/onduty/onduty/presence"
)

// Run measures what cfg asks for and returns the figures. In-process (no
// Target) it starts two onduty instances on one Redis, a bare Fiber server
// and a fake Telegram Bot API on 127.0.0.1, and stops them before returning.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Machine: machine(), Target: "in-process"}
	defer func() {
		rep.Seconds = round2(time.Since(rep.Started).Seconds())
		rep.checkTargets()
	}()
	if cfg.Target != "" {
		return rep, runTarget(ctx, &cfg, rep)
	}
	if cfg.runs(PhaseCPU) {
		if err := relayCPU(ctx, &cfg, rep); err != nil {
			return nil, err
		}
		if len(cfg.Only) == 1 {
			return rep, nil
		}
	}
	cfg.progress("starting: Redis, two onduty instances, bare Fiber, fake Telegram")
	e, err := startEnv(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if e != nil { // the capacity phases replace e
			e.stop()
		}
	}()
	rep.Redis = e.redisDesc
	if cfg.runs(PhaseStatus) {
		if err := statusLoad(ctx, &cfg, e.inst[0].ep, &e.bare, string(propStatus), e.roundTrips, rep); err != nil {
			return nil, err
		}
	}
	if cfg.runs(PhasePropagation) {
		store := e.inst[0].store
		p, err := propagation(ctx, &cfg, []endpoint{e.inst[0].ep, e.inst[1].ep}, string(propStatus), func(ctx context.Context, s string) error {
			_, err := store.SetStatus(withOrigin(ctx, originDriver), dutyAgent, presence.Status(s))
			return err
		})
		if err != nil {
			return nil, err
		}
		rep.Propagation = p
	}
	if cfg.runs(PhaseRelay) {
		if err := e.relay(ctx, &cfg, rep); err != nil {
			return nil, err
		}
	}
	// The capacity phases each run on a fresh deployment: nothing left over
	// from the other phases (streams a server has not noticed are gone,
	// garbage) in the figures.
	for _, ph := range []struct {
		name string
		run  func(*env, context.Context, *Config, *Report) error
	}{{PhaseCapacity, (*env).capacity}, {PhaseStreams, (*env).statusStreams}} {
		if !cfg.runs(ph.name) {
			continue
		}
		e.stop()
		if e, err = startEnv(ctx, &cfg); err != nil {
			return nil, err
		}
		if err := ph.run(e, ctx, &cfg, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// runTarget measures a running deployment over HTTP: status load, and
// propagation when an admin token and an agent are given.
func runTarget(ctx context.Context, cfg *Config, rep *Report) error {
	ep, err := parseEndpoint(cfg.Target)
	if err != nil {
		return err
	}
	rep.Target = cfg.Target
	if cfg.runs(PhaseStatus) {
		if err := statusLoad(ctx, cfg, ep, nil, url.PathEscape(cfg.Property), nil, rep); err != nil {
			return err
		}
	}
	if cfg.runs(PhasePropagation) && cfg.AdminToken != "" && cfg.Agent != "" {
		p, err := propagation(ctx, cfg, []endpoint{ep}, url.PathEscape(cfg.Property), func(ctx context.Context, s string) error {
			return adminSetStatus(ctx, ep, cfg.AdminToken, cfg.Agent, s)
		})
		if err != nil {
			return err
		}
		rep.Propagation = p
	}
	return nil
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

// adminSetStatus is PUT /v1/admin/agents/{a}/status.
func adminSetStatus(ctx context.Context, ep endpoint, token, agent, status string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, ep.url()+"/v1/admin/agents/"+url.PathEscape(agent)+"/status",
		strings.NewReader(`{"status":"`+status+`"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
