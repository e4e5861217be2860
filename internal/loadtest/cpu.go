package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onduty/onduty/internal/tgfake"
)

// RelayCPU is the CPU an `onduty serve` process spends per visitor message
// it relays to Telegram, read from outside (/proc) at a steady rate.
type RelayCPU struct {
	Rate     int     `json:"rate"`
	Seconds  float64 `json:"seconds"`
	Messages int     `json:"messages"`
	Arrived  int     `json:"arrived"`
	// CPUms is the process's user+system CPU over the sending and the
	// arrivals; MsPerMessage is CPUms over Messages.
	CPUms        float64 `json:"cpu_ms"`
	MsPerMessage float64 `json:"ms_per_message"`
	// IdleMsPerSecond is the process's CPU per second while idle (chats
	// open, nothing sent), measured before; NetMsPerMessage takes it out.
	IdleMsPerSecond float64 `json:"idle_ms_per_second"`
	NetMsPerMessage float64 `json:"net_ms_per_message"`
	// Note says why the figure is missing, if it is.
	Note string `json:"note,omitempty"`
}

// cpuChats is how many chats (and agents, one property each) carry the
// messages of the CPU phase: at 20 msg/s each chat gets one a second, as
// a real agent would, so Telegram's per-chat pacing merges nothing.
const cpuChats = 20

// relayCPU starts `onduty serve` (cfg.ServeCommand) against a fake Bot API
// served here, opens cpuChats chats accepted by their agents, and sends
// visitor messages over HTTP at cfg.CPURate for cfg.CPUDuration, reading
// the process's CPU time before and after.
func relayCPU(ctx context.Context, cfg *Config, rep *Report) error {
	out := &RelayCPU{Rate: cfg.CPURate, Seconds: cfg.CPUDuration.Seconds()}
	rep.RelayCPU = out
	if len(cfg.ServeCommand) == 0 {
		out.Note = "no serve command (run as `onduty loadtest`)"
		return nil
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		out.Note = "no /proc here to read a process's CPU time"
		return nil
	}
	rt, err := openRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rt.close()

	var sent atomic.Int64
	var mu sync.Mutex
	arrived := map[string]bool{}
	fake := tgfake.New(tgfake.Options{Token: tgToken, BotName: "onduty_cpu_bot", MaxHold: 5 * time.Second, CountOnly: true,
		OnSend: func(_ time.Time, _ int64, _ int, text string) {
			if i := strings.Index(text, "cpu#"); i >= 0 {
				mu.Lock()
				arrived[strings.Fields(text[i:])[0]] = true
				mu.Unlock()
			}
			sent.Add(1)
		}})
	defer fake.Close()

	addr, err := freePort()
	if err != nil {
		return err
	}
	prefix := "loadtest:" + randomHex(4) + ":"
	file, err := cpuConfigFile(addr, rt.url, prefix, fake.URL())
	if err != nil {
		return err
	}
	defer os.Remove(file)
	args := append(cfg.ServeCommand[1:], "serve", "--config", file)
	if cfg.ServeCPUProfile != "" {
		args = append(args, "--cpuprofile", cfg.ServeCPUProfile)
	}
	cmd := exec.Command(cfg.ServeCommand[0], args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("loadtest: start onduty serve: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		c := rt.newClient()
		deleteUnder(c, prefix)
		c.Close()
	}()
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	if err := waitUntil(ctx, 20*time.Second, func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return fmt.Errorf("loadtest: onduty serve not ready: %w; its log:\n%s", err, logs.String())
	}

	cfg.progress("relay cpu: %d chats accepted on Telegram, then %d msg/s for %s", cpuChats, cfg.CPURate, cfg.CPUDuration)
	type chat struct{ id, token string }
	chats := make([]chat, cpuChats)
	for i := range chats {
		body := `{"message":"hello","name":"Visitor ` + strconv.Itoa(i) + `"}`
		var got struct {
			ChatID string `json:"chat_id"`
			Token  string `json:"visitor_token"`
		}
		if err := postJSON(ctx, client, base+"/v1/properties/"+cpuProperty(i)+"/chats", "", body, http.StatusCreated, &got); err != nil {
			return err
		}
		chats[i] = chat{got.ChatID, got.Token}
		fake.Push(tgfake.PrivateMessage(tgUserBase+int64(i), "/accept"))
	}
	// Accepted once each visitor's transcript says its agent joined.
	for _, c := range chats {
		if err := waitUntil(ctx, 20*time.Second, func() bool {
			var tr struct {
				Messages []struct{ Text string } `json:"messages"`
			}
			if getJSON(ctx, client, base+"/v1/chats/"+c.id+"/messages", c.token, &tr) != nil {
				return false
			}
			for _, m := range tr.Messages {
				if strings.HasSuffix(m.Text, "joined the chat.") {
					return true
				}
			}
			return false
		}); err != nil {
			return fmt.Errorf("loadtest: relay cpu: chat %s not accepted: %w", c.id, err)
		}
	}

	pid := cmd.Process.Pid
	send := func(n int, tag string) int {
		failed := atomic.Int64{}
		openLoop(ctx, n, cfg.CPURate, func(seq int) {
			c := chats[seq%len(chats)]
			err := postJSON(ctx, client, base+"/v1/chats/"+c.id+"/messages", c.token,
				`{"text":"load cpu#`+tag+strconv.Itoa(seq)+`"}`, http.StatusAccepted, nil)
			if err != nil {
				failed.Add(1)
			}
		})
		return n - int(failed.Load())
	}
	countArrived := func(tag string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k := range arrived {
			if strings.HasPrefix(k, "cpu#"+tag) {
				n++
			}
		}
		return n
	}
	// Warm up (connections, caches, the outbox leases), then idle.
	warm := cfg.CPURate * 3
	ok := send(warm, "w")
	waitUntil(ctx, 30*time.Second, func() bool { return countArrived("w") >= ok })
	sleepCtx(ctx, 2*time.Second)
	idle0 := procCPU(pid)
	idleFor := 5 * time.Second
	sleepCtx(ctx, idleFor)
	idle1 := procCPU(pid)
	out.IdleMsPerSecond = round2(float64(idle1-idle0) / float64(time.Millisecond) / idleFor.Seconds())

	n := int(float64(cfg.CPURate) * cfg.CPUDuration.Seconds())
	c0 := procCPU(pid)
	t0 := time.Now()
	ok = send(n, "m")
	waitUntil(ctx, 60*time.Second, func() bool { return countArrived("m") >= ok })
	c1 := procCPU(pid)
	took := time.Since(t0)
	out.Messages, out.Arrived = ok, countArrived("m")
	out.CPUms = round2(float64(c1-c0) / float64(time.Millisecond))
	if ok > 0 {
		out.MsPerMessage = round2(out.CPUms / float64(ok))
		out.NetMsPerMessage = round2((out.CPUms - out.IdleMsPerSecond*took.Seconds()) / float64(ok))
	}
	return nil
}

// cpuProperty names the i-th property of the CPU phase.
func cpuProperty(i int) string { return fmt.Sprintf("cpu%02d", i) }

// cpuConfigFile writes the serve configuration of the CPU phase: one
// property per chat, each with one always-online Telegram agent, polling
// the fake Bot API; rate limits out of the way; logs at warn.
func cpuConfigFile(addr, redisURL, prefix, apiURL string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\nredis_url: %q\nredis_prefix: %q\nlog_level: warn\n", addr, redisURL, prefix)
	b.WriteString("rate_limits: {chats_per_ip_per_minute: 100000, messages_per_ip_per_minute: 1000000}\nproperties:\n")
	for i := range cpuChats {
		fmt.Fprintf(&b, "  - {id: %s, name: CPU %d, assignment: {accept_timeout: 1h, queue_timeout: 1h}}\n", cpuProperty(i), i)
	}
	b.WriteString("agents:\n")
	for i := range cpuChats {
		fmt.Fprintf(&b, "  - {id: a%02d, name: Agent %d, properties: [%s], telegram_user_id: %d, condition: always, initial_status: online}\n",
			i, i, cpuProperty(i), tgUserBase+int64(i))
	}
	fmt.Fprintf(&b, "telegram: {token: %q, mode: polling, api_url: %q}\n", tgToken, apiURL)
	f, err := os.CreateTemp("", "onduty-cpu-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		return "", err
	}
	return f.Name(), nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("loadtest: listen: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func postJSON(ctx context.Context, c *http.Client, url, token, body string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doJSON(c, req, want, out)
}

func getJSON(ctx context.Context, c *http.Client, url, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return doJSON(c, req, http.StatusOK, out)
}

func doJSON(c *http.Client, req *http.Request, want int, out any) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("loadtest: %s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(b.String()))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
