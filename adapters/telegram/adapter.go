package telegram

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/redis/go-redis/v9"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/backoff"
	"github.com/onduty/onduty/presence"
)

// surface is the adapter's name in actions, keys and logs.
const surface = "telegram"

// Surface is the adapter's name as agents' Accounts know it: an agent's
// account there is their Telegram user id in decimal.
const Surface presence.Surface = surface

// maxDeliverWait is how long Deliver waits for the local limiter before it
// hands the wait to the outbox as a RetryAfterError.
const maxDeliverWait = 1500 * time.Millisecond

// maxReplyWait bounds the pacing of answers to an agent's own action.
const maxReplyWait = 30 * time.Second

// Adapter is the Telegram side of the bridge. Create it with New.
type Adapter struct {
	cfg   Config
	dir   *presence.Directory
	rdb   redis.UniversalClient
	log   *slog.Logger
	bot   *bot.Bot
	keys  keys
	lim   pacer
	owner string // this instance's polling-lease token
	// retryWait is the pause before polling or an update is tried again
	// after the given number of failures: backoff (tests shorten it).
	retryWait func(failures int) time.Duration

	handler  atomic.Pointer[handlerBox]
	username atomic.Pointer[string] // the bot's @name, once getMe answered
	leading  atomic.Bool            // this instance holds the lease and polls
	rejected bridge.Rejection       // a delivery found the token refused: Run stops

	chatLocks [chatWorkers]sync.Mutex // webhook: one update per Telegram chat at a time
	groups    groupKinds              // which telegram_groups have no topics (groups.go)
}

type handlerBox struct{ h bridge.Host }

var _ bridge.Adapter = (*Adapter)(nil)

// New builds the adapter. It makes no request to Telegram; Run does.
func New(cfg Config, dir *presence.Directory, rdb redis.UniversalClient, log *slog.Logger) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	if dir == nil || rdb == nil {
		return nil, errors.New("telegram: a directory and a Redis client are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.applyDefaults()
	log = log.With("adapter", surface)
	b, err := bot.New(cfg.Token,
		bot.WithServerURL(cfg.APIURL),
		bot.WithSkipGetMe(),
		bot.WithHTTPClient(cfg.PollTimeout, cfg.HTTPClient),
		bot.WithErrorsHandler(func(err error) { log.Warn("telegram library", "err", err) }),
		bot.WithDebugHandler(func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }),
	)
	if err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("telegram: lease token: %w", err)
	}
	return &Adapter{
		cfg:       cfg,
		dir:       dir,
		rdb:       rdb,
		log:       log,
		bot:       b,
		keys:      keys{prefix: cfg.Prefix},
		lim:       newSharedLimiter(rdb, keys{prefix: cfg.Prefix}, telegramLimits, time.Now, log),
		owner:     hex.EncodeToString(tok[:]),
		retryWait: retryBackoff.Delay,
	}, nil
}

// Name is "telegram".
func (a *Adapter) Name() string { return surface }

// Reaches reports whether the agent has a Telegram user id.
func (a *Adapter) Reaches(agent presence.AgentID) bool {
	_, ok := a.userID(agent)
	return ok
}

// userID is the agent's Telegram user id, which is also their private chat's id.
func (a *Adapter) userID(agent presence.AgentID) (int64, bool) {
	ag, ok := a.dir.Agent(agent)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(ag.Account(Surface), 10, 64)
	return id, err == nil && id != 0
}

// agentByUser finds the agent whose Telegram account is the user id. No
// user has id 0 (as userID holds too).
func (a *Adapter) agentByUser(user int64) (presence.Agent, bool) {
	if user == 0 {
		return presence.Agent{}, false
	}
	return a.dir.AgentByAccount(Surface, strconv.FormatInt(user, 10))
}

// Shared reports whether the property has a forum supergroup.
func (a *Adapter) Shared(p presence.PropertyID) bool { return a.cfg.Groups[p] != 0 }

// Run receives updates and hands agent actions to h until ctx is done:
// by long polling while this instance holds the polling lease, or, in
// webhook mode, by registering the webhook (WebhookHandler receives).
func (a *Adapter) Run(ctx context.Context, h bridge.Host) error {
	if h == nil {
		return errors.New("telegram: run: nil handler")
	}
	a.handler.Store(&handlerBox{h: h})
	if err := a.introduce(ctx); err != nil {
		return err
	}
	// A delivery refused for the token stops Run too (in webhook mode no
	// other call would notice).
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.rejected.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var err error
	if a.cfg.Mode == ModeWebhook {
		err = a.runWebhook(ctx)
	} else {
		err = a.runPolling(ctx, h)
	}
	if rej := a.rejected.Err(); rej != nil && parent.Err() == nil && err == nil {
		return rej
	}
	return err
}

// introduce learns the bot's username (to tell /cmd@us from /cmd@other) and
// publishes the command list. Both are best effort: the bot works without.
func (a *Adapter) introduce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Verify(ctx); err != nil {
		var rej *bridge.RejectedError
		if errors.As(err, &rej) {
			return err
		}
		a.log.Warn("getMe failed; accepting /cmd@any", "err", err)
	}
	cmds := make([]models.BotCommand, 0, len(bridge.Commands))
	for _, c := range bridge.Commands {
		cmds = append(cmds, models.BotCommand{Command: c.Name, Description: c.Help})
	}
	if _, err := a.bot.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: cmds}); err != nil {
		a.log.Warn("setMyCommands failed", "err", classify("set my commands", err))
	}
	return nil
}

// Verify asks Telegram who the bot is (getMe). It returns a
// *bridge.RejectedError naming telegram.token when Telegram refuses the
// token, and another error when Telegram could not be asked (network, 5xx):
// that one is worth retrying, the first is not.
func (a *Adapter) Verify(ctx context.Context) error {
	me, err := a.bot.GetMe(ctx)
	if err != nil {
		if rej, ok := rejectedSDK(err); ok {
			rej.Err = classify("get me", err)
			return rej
		}
		return classify("get me", err)
	}
	if me.Username != "" {
		name := me.Username
		a.username.Store(&name)
	}
	return nil
}

func (a *Adapter) botName() string {
	if p := a.username.Load(); p != nil {
		return *p
	}
	return ""
}

// sleep waits d or until ctx is done; it reports whether d passed.
var sleep = backoff.Sleep

// retryBackoff is the pause before polling, an update or the webhook's
// registration is tried again: 200ms, 400ms … 10s.
var retryBackoff = backoff.Policy{Min: 200 * time.Millisecond, Max: 10 * time.Second}
