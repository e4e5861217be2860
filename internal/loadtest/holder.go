package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// HolderEnv, set to "1" in a process's environment, makes it a stream
// holder (see Hold): the capacity phase starts one so that the client ends
// of the held streams neither count in the measured process's memory nor
// share its RLIMIT_NOFILE.
const HolderEnv = "ONDUTY_LOADTEST_HOLDER"

// holdRequest asks the holder to open more streams (Op empty: visitor
// streams, held unread), or works its status streams (followed, see
// follower): Op "status" opens Count streams of Paths[0] from the Local
// source addresses, "arm" starts noting arrivals of the widget status
// Target, "collect" answers the arrivals, waiting up to WaitMS for the last.
type holdRequest struct {
	Op      string   `json:"op,omitempty"`
	Addr    string   `json:"addr"`
	Host    string   `json:"host"`
	Paths   []string `json:"paths"`
	Headers []string `json:"headers"` // one per path, "Name: value\r\n" lines
	Count   int      `json:"count,omitempty"`
	Local   []string `json:"local,omitempty"`
	Target  string   `json:"target,omitempty"`
	WaitMS  int64    `json:"wait_ms,omitempty"`
}

type holdAnswer struct {
	Held     int     `json:"held"`
	Arrivals []int64 `json:"arrivals,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// Hold is the stream holder's main loop: for each JSON request read from
// r it opens the streams, waits for each one's first status event, keeps
// them open and answers on w with how many it holds. When r ends it closes
// them all and returns.
func Hold(ctx context.Context, r io.Reader, w io.Writer) error {
	raiseNoFile(1 << 20)
	h := &localHolder{}
	defer h.close()
	f := &follower{}
	defer f.close()
	dec := json.NewDecoder(r)
	enc := json.NewEncoder(w)
	for {
		var req holdRequest
		if err := dec.Decode(&req); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("loadtest: holder: %w", err)
		}
		var a holdAnswer
		var err error
		ep := endpoint{addr: req.Addr, host: req.Host}
		switch req.Op {
		case "":
			a.Held, err = h.open(ctx, ep, req.Paths, req.Headers)
		case "status":
			if len(req.Paths) != 1 {
				err = errors.New("loadtest: holder: status streams need one path")
				break
			}
			a.Held, err = f.open(ctx, ep, req.Paths[0], req.Count, req.Local)
		case "arm":
			f.arm(req.Target)
			a.Held = f.held()
		case "collect":
			a.Arrivals = f.collect(time.Duration(req.WaitMS) * time.Millisecond)
			a.Held = len(a.Arrivals)
		default:
			err = fmt.Errorf("loadtest: holder: unknown op %q", req.Op)
		}
		if err != nil {
			a.Error = err.Error()
		}
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("loadtest: holder: %w", err)
		}
	}
}

// streamHolder holds client ends of streams: in a child process when a
// command is given, else in this process.
type streamHolder interface {
	open(ctx context.Context, ep endpoint, paths, headers []string) (held int, err error)
	close()
}

// childHolder talks to a holder process.
type childHolder struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	enc  *json.Encoder
	once sync.Once
}

func startChildHolder(command []string) (*childHolder, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = append(os.Environ(), HolderEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: start stream holder: %w", err)
	}
	return &childHolder{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out)), enc: json.NewEncoder(in)}, nil
}

func (h *childHolder) open(_ context.Context, ep endpoint, paths, headers []string) (int, error) {
	a, err := h.ask(holdRequest{Addr: ep.addr, Host: ep.host, Paths: paths, Headers: headers})
	return a.Held, err
}

// ask sends one request and reads its answer.
func (h *childHolder) ask(req holdRequest) (holdAnswer, error) {
	var a holdAnswer
	if err := h.enc.Encode(req); err != nil {
		return a, fmt.Errorf("loadtest: stream holder: %w", err)
	}
	if err := h.out.Decode(&a); err != nil {
		return a, fmt.Errorf("loadtest: stream holder: %w", err)
	}
	if a.Error != "" {
		return a, fmt.Errorf("loadtest: stream holder: %s", a.Error)
	}
	return a, nil
}

func (h *childHolder) close() {
	h.once.Do(func() {
		h.in.Close()
		done := make(chan struct{})
		go func() { h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-done
		}
	})
}

// localHolder holds the streams in this process.
type localHolder struct{ held []*sseStream }

func (h *localHolder) open(ctx context.Context, ep endpoint, paths, headers []string) (int, error) {
	streams := make([]*sseStream, len(paths))
	err := parallel(ctx, len(paths), 64, func(i int) error {
		s, err := openSSE(ctx, ep, paths[i], headers[i])
		if err != nil {
			return err
		}
		streams[i] = s
		if err := s.waitFor("status", 10*time.Second); err != nil {
			return err
		}
		s.hold()
		return nil
	})
	for _, s := range streams {
		if s != nil {
			h.held = append(h.held, s)
		}
	}
	return len(h.held), err
}

func (h *localHolder) close() {
	for _, s := range h.held {
		s.Close()
	}
	h.held = nil
}
