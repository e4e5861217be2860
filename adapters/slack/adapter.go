package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/backoff"
	"github.com/onduty/onduty/presence"
)

// Connection modes.
const (
	ModeSocket = "socket"
	ModeEvents = "events"
)

// DefaultAPIURL is Slack's Web API base.
const DefaultAPIURL = "https://slack.com/api/"

// Config configures the adapter.
type Config struct {
	// BotToken (xoxb-…) calls the Web API. Required.
	BotToken string
	// AppToken (xapp-…) opens Socket Mode connections. Required in socket mode.
	AppToken string
	// SigningSecret verifies Events API requests. Required in events mode.
	SigningSecret string
	// Mode is "socket" (zero value) or "events".
	Mode string
	// APIURL is the Web API base ending in /api/; a missing slash is added.
	// Zero means https://slack.com/api/.
	APIURL string
	// Channels names each property's slack_channel. A property without one is
	// reached through its agents' DMs.
	Channels map[presence.PropertyID]string
	// UsePresence polls users.getPresence for activity-condition agents and
	// reports "active" as activity.
	UsePresence bool
	// PresenceEvery is how often each agent's presence is read. Zero means 1m.
	// Calls are spread out and never exceed 50 a minute (Slack's Tier 3).
	PresenceEvery time.Duration
	// Prefix starts every Redis key. Zero means "onduty:".
	Prefix string
	// HTTPClient calls the Web API. Zero means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// refusalTTL is how long a stranger's refusal is remembered: they are told once a day.
const refusalTTL = 24 * time.Hour

// Adapter is the Slack surface of the bridge. It is safe for concurrent use.
type Adapter struct {
	cfg  Config
	dir  *presence.Directory
	rdb  redis.UniversalClient
	log  *slog.Logger
	keys keys
	api  *slackapi.Client
	pace *pacer

	// shards run inbound work; one agent's actions always go to the same shard,
	// so they reach the bridge in the order Slack sent them.
	shards []chan *job

	// syncWait is how long a slash command waits for the bridge's answer to
	// put it in the response itself (Slack wants one within 3 s).
	syncWait time.Duration
	// handleWait is how long an event or a button press waits to be handled
	// before it is acknowledged anyway. Acknowledging after the handling means
	// that an instance dying in between leaves the event unacknowledged, and
	// Slack sends it again; acknowledging late (Slack wants it within 3 s)
	// would only bring retries that the de-duplication then drops.
	handleWait time.Duration
	// pollGap is the least time between two users.getPresence calls.
	pollGap time.Duration
	// storageWait is the pause before an agent's message is handed to the
	// bridge again while storage is down (failures counts the tries so far).
	storageWait func(failures int) time.Duration

	rejected bridge.Rejection // a Web API call found the bot token refused: Run stops

	mu      sync.RWMutex
	h       bridge.Host
	botUser string
	botID   string
}

var _ bridge.Adapter = (*Adapter)(nil)

// job is work for an agent's worker. run reports whether the work was
// left to Slack's next try (another instance handles the same event now).
type job struct {
	run   func(ctx context.Context, h bridge.Host) (again bool)
	again bool          // run's answer, readable once done is closed
	done  chan struct{} // closed once run has returned
}

// handled is a job that needed no handling.
var handled = func() *job {
	j := &job{done: make(chan struct{})}
	close(j.done)
	return j
}()

// waitHandled waits until j is done, handleWait has passed, or ctx is
// done, and reports whether to acknowledge the event to Slack: not when
// ctx ended (a stopping instance leaves what it has not handled to
// Slack's next try) nor when the work was left to Slack's next try.
func (a *Adapter) waitHandled(ctx context.Context, j *job) bool {
	t := time.NewTimer(a.handleWait)
	defer t.Stop()
	select {
	case <-j.done:
		return !j.again
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

const numShards = 16

// New checks cfg and builds the adapter. It makes no network call: the bot's
// identity is read by Run.
func New(cfg Config, dir *presence.Directory, rdb redis.UniversalClient, log *slog.Logger) (*Adapter, error) {
	if dir == nil || rdb == nil {
		return nil, errors.New("slack: directory and redis are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var problems []string
	cfg.Check(func(key, why string) { problems = append(problems, key+": "+why) })
	if cfg.Mode == "" {
		cfg.Mode = ModeSocket
	}
	channels := make(map[presence.PropertyID]string, len(cfg.Channels))
	for p, ch := range cfg.Channels {
		if _, ok := dir.Property(p); !ok {
			problems = append(problems, fmt.Sprintf("channel for unknown property %q", p))
		}
		if ch != "" {
			channels[p] = ch
		}
	}
	cfg.Channels = channels
	if len(problems) > 0 {
		return nil, fmt.Errorf("slack: %s", strings.Join(problems, "; "))
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	if cfg.PresenceEvery <= 0 {
		cfg.PresenceEvery = time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	log = log.With("adapter", "slack")
	opts := []slackapi.Option{
		slackapi.OptionAPIURL(cfg.APIURL),
		slackapi.OptionHTTPClient(cfg.HTTPClient),
		slackapi.OptionLog(sdkLogger{log}),
	}
	if cfg.AppToken != "" {
		opts = append(opts, slackapi.OptionAppLevelToken(cfg.AppToken))
	}
	a := &Adapter{
		cfg:         cfg,
		dir:         dir,
		rdb:         rdb,
		log:         log,
		keys:        keys{prefix: cfg.Prefix},
		api:         slackapi.New(cfg.BotToken, opts...),
		pace:        newPacer(time.Second, 3),
		shards:      make([]chan *job, numShards),
		syncWait:    2500 * time.Millisecond,
		handleWait:  2500 * time.Millisecond,
		storageWait: backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}.Delay,
		pollGap:     1200 * time.Millisecond,
	}
	for i := range a.shards {
		a.shards[i] = make(chan *job, 64)
	}
	return a, nil
}

// Surface is the adapter's name in actions, keys and logs, and as agents'
// Accounts know it: an agent's account there is their Slack user id.
const Surface presence.Surface = "slack"

// Name is "slack".
func (a *Adapter) Name() string { return string(Surface) }

// Reaches reports whether the agent has a Slack user id.
func (a *Adapter) Reaches(agent presence.AgentID) bool {
	ag, ok := a.dir.Agent(agent)
	return ok && ag.Account(Surface) != ""
}

// Shared reports whether the property has a Slack channel.
func (a *Adapter) Shared(p presence.PropertyID) bool { return a.cfg.Channels[p] != "" }

func (a *Adapter) handler() bridge.Host {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.h
}

func (a *Adapter) bot() (user, id string) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.botUser, a.botID
}

// Run learns the bot's identity (auth.test), then takes agent actions from
// Slack (Socket Mode, or the HTTP handlers in events mode) and hands them to
// h until ctx is done. It waits for every goroutine it started.
func (a *Adapter) Run(ctx context.Context, h bridge.Host) error {
	if err := a.identify(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.mu.Lock()
	a.h = h
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.h = nil
		a.mu.Unlock()
	}()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, ch := range a.shards {
		wg.Go(func() { a.work(ctx, h, ch) })
	}
	if a.cfg.UsePresence {
		wg.Go(func() { a.pollPresence(ctx, h) })
	}
	// A delivery refused for the bot token stops Run too (the socket,
	// opened with the app token, may well stay up).
	go func() {
		select {
		case <-a.rejected.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var err error
	if a.cfg.Mode == ModeSocket {
		err = a.runSocket(ctx)
		cancel() // a connection that cannot be had stops the rest too
	} else {
		<-ctx.Done()
	}
	wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	if err == nil {
		err = a.rejected.Err()
	}
	return err
}

// identifyBackoff paces auth.test retries: 1s doubling to a minute.
var identifyBackoff = backoff.Policy{Min: time.Second, Max: time.Minute}

// identify calls auth.test until it succeeds, so the bot can ignore its own
// messages.
func (a *Adapter) identify(ctx context.Context) error {
	var wait time.Duration
	for {
		res, err := a.api.AuthTestContext(ctx)
		if err == nil {
			a.mu.Lock()
			a.botUser, a.botID = res.UserID, res.BotID
			a.mu.Unlock()
			a.log.Info("slack connected", "bot_user", res.UserID, "team", res.Team, "mode", a.cfg.Mode)
			return nil
		}
		if rej, ok := rejected(botTokenKey, err); ok {
			return rej
		}
		wait = identifyBackoff.Next(wait)
		a.log.Warn("slack auth.test failed, retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// The settings a rejected token is fixed in.
const (
	botTokenKey = "slack.bot_token (or SLACK_BOT_TOKEN)"
	appTokenKey = "slack.app_token (or SLACK_APP_TOKEN)"
)

// rejected reports whether Slack refused a token itself (not a request made
// with it), and returns the error the adapter stops with, naming key.
func rejected(key string, err error) (*bridge.RejectedError, bool) {
	if err == nil {
		return nil, false
	}
	var se slackapi.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type", "invalid_token":
			return &bridge.RejectedError{Key: key, Reason: "token rejected (" + se.Err + ")", Err: err}, true
		}
	}
	// socketmode reports apps.connections.open's refusals as a bare error.
	switch msg := err.Error(); msg {
	case "invalid_auth", "not_authed", "account_inactive", "token_revoked":
		return &bridge.RejectedError{Key: key, Reason: "token rejected (" + msg + ")", Err: err}, true
	}
	return nil, false
}

// Verify checks the credentials once: the bot token (auth.test) and, in
// socket mode, the app-level token (apps.connections.open). It returns a
// *bridge.RejectedError naming the key when Slack refuses a token, and
// another error when Slack could not be asked (network, 5xx, rate limit):
// that one is worth retrying, the first is not.
func (a *Adapter) Verify(ctx context.Context) error {
	if _, err := a.api.AuthTestContext(ctx); err != nil {
		if rej, ok := rejected(botTokenKey, err); ok {
			return rej
		}
		return fmt.Errorf("slack: auth.test: %w", err)
	}
	if a.cfg.Mode != ModeSocket {
		return nil
	}
	// The URL it answers is never dialled; it expires unused.
	if _, _, err := a.api.StartSocketModeContext(ctx); err != nil {
		if rej, ok := rejected(appTokenKey, err); ok {
			return rej
		}
		return fmt.Errorf("slack: apps.connections.open: %w", err)
	}
	return nil
}

// enqueue hands work to the shard of key. It blocks while the shard is full,
// until ctx is done.
func (a *Adapter) enqueue(ctx context.Context, key string, run func(ctx context.Context, h bridge.Host) bool) (*job, error) {
	j := &job{run: run, done: make(chan struct{})}
	select {
	case a.shards[bridge.Shard(key, numShards)] <- j:
		return j, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Adapter) work(ctx context.Context, h bridge.Host, ch chan *job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-ch:
			j.again = j.run(ctx, h)
			close(j.done)
		}
	}
}

// runSocket holds the Socket Mode connection and reads its events until ctx
// is done. Slack gives each envelope to one connection, so every instance may
// connect; a redelivered event is still handled once (Action.DedupKey).
func (a *Adapter) runSocket(ctx context.Context) error {
	smc := socketmode.New(a.api, socketmode.OptionLog(sdkLogger{a.log}))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.readSocket(ctx, smc, &wg) })
	err := smc.RunContext(ctx)
	failed := ctx.Err() == nil
	cancel()
	wg.Wait()
	if err != nil && failed {
		if rej, ok := rejected(appTokenKey, err); ok {
			return rej
		}
		return fmt.Errorf("slack: socket mode: %w", err)
	}
	return nil
}

// sdkLogger routes the SDK's log lines into slog at debug level.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Output(_ int, s string) error {
	l.log.Debug(strings.TrimSpace(s), "source", "slack-go")
	return nil
}
