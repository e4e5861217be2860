package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/onduty/onduty/presence"
)

// ChatID names a visitor chat. It is random and safe in URLs and callback data
// (at most 22 characters of [A-Za-z0-9_-]).
type ChatID string

// IsValid reports whether id has the form of the ids the bridge issues
// (1-22 of [A-Za-z0-9_-]): anything else is refused before it becomes part of
// a key, a URL or callback data.
func (id ChatID) IsValid() bool {
	if len(id) == 0 || len(id) > 22 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ChatState is where a chat is in its life.
type ChatState string

// Chat states (SPEC §4).
const (
	Pending ChatState = "pending"
	Active  ChatState = "active"
	Closed  ChatState = "closed"
)

// IsValid reports whether s is a known state.
func (s ChatState) IsValid() bool { return s == Pending || s == Active || s == Closed }

// Visitor is what a visitor told us about themselves.
type Visitor struct {
	Name    string `json:"name,omitempty"`
	Email   string `json:"email,omitempty"`
	PageURL string `json:"page_url,omitempty"`
	// Consent is true when the visitor ticked the property's consent box.
	Consent bool `json:"consent,omitempty"`
	// IP is the client address the chat was started from (not shown to agents).
	IP string `json:"-"`

	// Context the widget and the server gathered (SPEC §10), shown to agents
	// with the offer. All of it is plain text as received.
	Referrer string `json:"referrer,omitempty"`
	Language string `json:"language,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	// Browser and OS come from the User-Agent ("Chrome 118", "Windows").
	Browser string `json:"browser,omitempty"`
	OS      string `json:"os,omitempty"`
	// Returning is how many chats this visitor started before (set by the
	// bridge when the chat starts).
	Returning int `json:"returning,omitempty"`
	// Identity is what the site said about the visitor (window.onduty.identify).
	Identity *Identity `json:"identity,omitempty"`
	// ID is the widget's random id of the visitor's browser, if it sent one
	// (ValidVisitorID; not shown to agents). Blocks follow it.
	ID string `json:"-"`
}

// ValidVisitorID reports whether s may be a visitor id: 16 to 64 of
// [A-Za-z0-9_-] (the widget sends 32 hex digits).
func ValidVisitorID(s string) bool { return len(s) >= 16 && len(s) <= 64 && validIDChars(s) }

func validIDChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Chat is a conversation between one visitor and the property's agents.
type Chat struct {
	ID       ChatID              `json:"id"`
	Property presence.PropertyID `json:"property"`
	State    ChatState           `json:"state"`
	Visitor  Visitor             `json:"visitor"`
	// Owner is the agent who accepted it; empty while pending.
	Owner presence.AgentID `json:"owner,omitempty"`
	// Monitors watch without owning (invisible agents, /monitor).
	Monitors []presence.AgentID `json:"monitors,omitempty"`
	// Offline is true for an offline message: left through the form, or a
	// chat nobody accepted within queue_timeout. Agents may still answer it.
	Offline   bool      `json:"offline,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// LastMessageAt drives close_after_idle.
	LastMessageAt time.Time `json:"last_message_at"`
	// ClosedBy is "agent:ID", "visitor" or "idle" once closed.
	ClosedBy string `json:"closed_by,omitempty"`
	// Rating is the visitor's rating once given (the latest one).
	Rating *Rating `json:"rating,omitempty"`
	// EmailError is why the last email to the visitor was refused for good
	// (the SMTP server's 5xx answer); empty when none was.
	EmailError string `json:"email_error,omitempty"`
}

// Rating is a visitor's verdict on a closed chat.
type Rating struct {
	// Score is 1 (bad) to 5 (great).
	Score   int       `json:"score"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// Rating limits.
const (
	MinScore              = 1
	MaxScore              = 5
	MaxRatingCommentRunes = 1000
)

// SenderKind says who wrote a message.
type SenderKind string

// Message senders.
const (
	FromVisitor SenderKind = "visitor"
	FromAgent   SenderKind = "agent"
	FromSystem  SenderKind = "system"
)

// Message is one line of a chat's transcript.
type Message struct {
	// ID orders messages within a chat (a Redis stream id, "1700000000000-0").
	ID   string     `json:"id"`
	Chat ChatID     `json:"chat_id"`
	From SenderKind `json:"from"`
	// Agent and Name are set for agent messages (Name is what the visitor sees).
	Agent presence.AgentID `json:"agent,omitempty"`
	Name  string           `json:"name,omitempty"`
	Text  string           `json:"text"`
	// Note marks an agent's internal note ("//…"): never shown to the visitor.
	Note       bool        `json:"note,omitempty"`
	At         time.Time   `json:"at"`
	Attachment *Attachment `json:"attachment,omitempty"`
}

// Attachment is a file sent with a message. The bytes live in Redis under Key
// (bounded size) and are served to the visitor by the widget API.
type Attachment struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	MIME string `json:"mime"`
	Size int64  `json:"size"`
}

// Limits on visitor and agent text (SPEC §6).
const (
	MaxTextRunes = 4000
)

// Errors of the bridge. Adapters and the widget map them to their surface.
var (
	ErrUnknownChat     = errors.New("bridge: unknown chat")
	ErrUnknownProperty = errors.New("bridge: unknown property")
	ErrBadToken        = errors.New("bridge: wrong visitor token")
	ErrChatClosed      = errors.New("bridge: chat is closed")
	ErrInvalidText     = fmt.Errorf("bridge: text must be 1..%d characters of valid UTF-8", MaxTextRunes)
	// ErrNoEmail: the chat has no visitor email address to send to.
	ErrNoEmail = errors.New("bridge: the chat has no email address")
	// ErrEmailOff: this server sends no email (no SMTP server configured).
	ErrEmailOff = errors.New("bridge: email is not configured")
	// ErrChatOpen: the chat must be closed first (rating).
	ErrChatOpen = errors.New("bridge: chat is not closed yet")
	// ErrInvalidRating: score outside 1..5 or a comment over 1000 characters.
	ErrInvalidRating = errors.New("bridge: score must be 1..5 and the comment at most 1000 characters")
	// ErrUnavailable wraps Redis failures: the caller should answer 503, never 2xx.
	ErrUnavailable = errors.New("bridge: storage unavailable")
	// ErrInProgress: another instance is handling the same platform event
	// (Action.DedupKey) right now. Try again later: if that instance dies,
	// its claim expires and the event is handled here.
	ErrInProgress = errors.New("bridge: the same platform event is being handled elsewhere")
)

// RetryAfterError is returned by Adapter.Deliver when the platform asked us to
// wait (HTTP 429). The outbox waits at least After before trying again.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s: %v", e.After, e.Err)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RejectedError is returned by an adapter whose platform refused its
// credentials (a revoked or mistyped token): retrying cannot help. At start
// onduty refuses to run with it; later, the adapter stops and /readyz names it.
type RejectedError struct {
	// Key names the setting to fix, as a user writes it:
	// "telegram.token (or TELEGRAM_BOT_TOKEN)".
	Key string
	// Reason says what happened in a few words: "token rejected (401)".
	Reason string
	// Err is the platform's answer.
	Err error
}

func (e *RejectedError) Error() string {
	if e.Err == nil {
		return e.Key + ": " + e.Reason
	}
	return e.Key + ": " + e.Reason + ": " + e.Err.Error()
}
func (e *RejectedError) Unwrap() error { return e.Err }

// Rejection lets an adapter stop Run when the platform refuses its
// credentials outside Run's own calls (a delivery answered "unauthorized"):
// Deliver records the error, Run watches Done and returns Err. The zero
// value is ready to use; only the first error is kept.
type Rejection struct {
	mu   sync.Mutex
	done chan struct{}
	err  *RejectedError
}

func (r *Rejection) init() {
	if r.done == nil {
		r.done = make(chan struct{})
	}
}

// Set records err (the first one only) and closes Done.
func (r *Rejection) Set(err *RejectedError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if r.err == nil {
		r.err = err
		close(r.done)
	}
}

// Done is closed once an error was recorded.
func (r *Rejection) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	return r.done
}

// Err is the recorded error, nil if none.
func (r *Rejection) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		return nil
	}
	return r.err
}

// PermanentError marks a delivery that can never succeed (the platform said
// the request itself is wrong). The outbox stops retrying it and records it in
// a dead-letter stream instead of blocking the chat's later messages.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// ErrPaced is wrapped in a RetryAfterError by an adapter that held a
// delivery back for the platform's pacing before sending anything: the
// outbox tries again after After without counting a failure.
var ErrPaced = errors.New("bridge: held back by the platform's pacing")

// UncertainError is a failed platform call that may have reached the
// platform: its request was written out but no answer came (a timeout, a
// connection lost). The outbox retries it only after the call's window
// (Config.DeliverTimeout) has passed, never at once. See Call.
type UncertainError struct{ Err error }

func (e *UncertainError) Error() string {
	return "no answer, may have reached the platform: " + e.Err.Error()
}
func (e *UncertainError) Unwrap() error { return e.Err }

// DeliveryKind says what a Delivery asks the adapter to show.
type DeliveryKind string

// Delivery kinds.
const (
	// KindOffer: a new (or re-offered) chat with an Accept button, and a
	// Monitor button if Offer.Monitor. Shows the visitor and first message.
	KindOffer DeliveryKind = "offer"
	// KindTaken: the chat was accepted by TakenBy; edit the offer to say so.
	KindTaken DeliveryKind = "taken"
	// KindWithdrawn: the offer is no longer open (closed or timed out before
	// anyone accepted); edit the offer to say why (Text).
	KindWithdrawn DeliveryKind = "withdrawn"
	// KindMessage: a message in the chat (the visitor's, another agent's, or a
	// system line) for the agent or the shared place.
	KindMessage DeliveryKind = "message"
	// KindClosed: the chat ended (Text says how).
	KindClosed DeliveryKind = "closed"
	// KindNotice: plain text for one agent (transfer to them, queue timeout…).
	KindNotice DeliveryKind = "notice"
	// KindPrompt: "Still on duty?" for one agent with a one-tap button that
	// the adapter reports as ActStillHere.
	KindPrompt DeliveryKind = "prompt"
	// KindEmail: an email to the chat's visitor (Delivery.Email), for the
	// email sender (EmailTarget) only.
	KindEmail DeliveryKind = "email"
	// KindHook: a chat event (Delivery.Hook) for a Subscriber (webhook) only.
	KindHook DeliveryKind = "hook"
)

// EmailTarget is the outbox target (Adapter.Name) of the email sender. An
// adapter of that name makes the bridge email visitors (SPEC §9); it
// reaches no agent and has no shared place, so chat events never go to it.
const EmailTarget = "email"

// EmailKind says what an email carries.
type EmailKind string

// Email kinds.
const (
	// EmailReplies: agents' answers the visitor has not read in the widget.
	EmailReplies EmailKind = "replies"
	// EmailTranscript: the whole conversation, asked for by the visitor.
	EmailTranscript EmailKind = "transcript"
)

// Email is what the email sender puts in one message to a visitor. Every
// field is plain text as typed; the sender escapes it.
type Email struct {
	Kind EmailKind `json:"kind"`
	// To and ToName are the visitor's address and name.
	To     string `json:"to"`
	ToName string `json:"to_name,omitempty"`
	// Property is the property's configured name.
	Property string `json:"property"`
	// Messages are quoted in order: the replies, or the whole transcript.
	Messages []Message `json:"messages"`
	// ContinueURL opens the chat in the widget ({public_url}/c/{chat}#{token}).
	ContinueURL string `json:"continue_url,omitempty"`
}

// Delivery is one item of the outbox for one adapter.
type Delivery struct {
	// ID is unique and stable across retries of this item.
	ID   string       `json:"id"`
	Kind DeliveryKind `json:"kind"`
	// Agent is who it is for; empty means the property's shared place (the
	// Slack channel, the Telegram forum group) where the adapter has one.
	Agent presence.AgentID `json:"agent,omitempty"`
	// Chat is a snapshot of the chat when the item was queued.
	Chat    Chat     `json:"chat"`
	Message *Message `json:"message,omitempty"`
	// Text is the wording for notices, prompts, withdrawals and closings.
	Text string `json:"text,omitempty"`
	// Monitor asks for a Monitor button on an offer (invisible agents).
	Monitor bool `json:"monitor,omitempty"`
	// TakenBy is the owner's display name (KindTaken).
	TakenBy string `json:"taken_by,omitempty"`
	// Email is the message to send (KindEmail).
	Email *Email `json:"email,omitempty"`
	// Hook is the chat event to send (KindHook).
	Hook *Hook `json:"hook,omitempty"`

	// Thread is the chat's own place on this adapter for this delivery's
	// target (Agent, or the shared place when Agent is empty): the RefThread
	// an earlier delivery made. Nil until one was made. Set by the outbox,
	// never stored with the item.
	Thread *RemoteRef `json:"-"`
	// Offers are the RefOffer objects shown for the chat to this target
	// and not yet edited: what KindTaken and KindWithdrawn edit. Set by the
	// outbox.
	Offers []RemoteRef `json:"-"`
	// Done are the objects an earlier attempt of this same delivery made
	// before it failed: the adapter continues after them instead of
	// showing them again. Set by the outbox.
	Done []RemoteRef `json:"-"`

	// Backlog is set by the outbox (never stored) when the chat's
	// deliveries are queued up behind the platform's pacing. Adapters let
	// items without it go first: a backlogged item should not take the last
	// send the pacing allows now, and should return a RetryAfterError
	// wrapping ErrPaced rather than sleep for its turn.
	Backlog bool `json:"-"`
}

// Adapter connects the bridge to one chat platform used by agents.
// Implementations must be safe for concurrent use: Deliver is called from
// several outbox workers, but never concurrently for the same chat.
type Adapter interface {
	// Name is the surface's name ("telegram", "slack"), used in keys and logs.
	Name() string
	// Reaches reports whether this adapter can show anything to the agent.
	Reaches(agent presence.AgentID) bool
	// Shared reports whether the property has a shared place on this platform
	// (Slack channel, Telegram forum group). If so, chat events arrive once
	// with an empty Agent, and per-agent deliveries are only notices and prompts.
	Shared(p presence.PropertyID) bool
	// Run receives agent actions and hands them to h until ctx is done.
	Run(ctx context.Context, h Host) error
	// Deliver shows one outbox item on the platform. It returns
	// *RetryAfterError when rate limited (wrapping ErrPaced when its own
	// pacing held the item back), *PermanentError when retrying cannot help,
	// and *UncertainError when a call may have reached the platform; any
	// other error is retried with backoff. ctx has no deadline: Deliver
	// bounds its pacing waits itself and runs each platform request through
	// Call, which applies the delivery timeout to the request alone.
	//
	// Deliver returns the objects it made on the platform (messages, offers,
	// the chat's thread), also when it fails partway: the bridge keeps
	// them, so that replies to them reach the chat (Host.ChatOf), later
	// deliveries find the chat's thread and offers (Delivery.Thread,
	// Delivery.Offers), and a retry continues after what was already shown
	// (Delivery.Done). The adapter keeps none of this itself.
	Deliver(ctx context.Context, d Delivery) ([]RemoteRef, error)
}

// RefRole says what an object on a platform is to its chat.
type RefRole string

// Roles of remote objects.
const (
	// RefMessage: a message shown for the chat; a reply to it answers the chat.
	RefMessage RefRole = "message"
	// RefOffer: an offer with buttons, edited when the chat is taken or the
	// offer withdrawn (Delivery.Offers); a reply to it answers the chat.
	RefOffer RefRole = "offer"
	// RefThread: the chat's own place on the platform (a Telegram forum
	// topic, the Slack message a chat's thread hangs off); what is written
	// in it answers the chat. One per chat and target; a newer one replaces
	// the older.
	RefThread RefRole = "thread"
)

// RemoteRef names an object an adapter made on its platform, in the
// platform's own ids. The bridge keeps what Deliver returns and hands it
// back (Delivery.Thread, Offers, Done); an adapter names what an agent
// answered with one (Action.ReplyTo, Host.ChatOf).
type RemoteRef struct {
	Role RefRole `json:"role,omitempty"`
	// Conversation is the platform's chat or channel id (a Telegram chat
	// id, a Slack channel id).
	Conversation string `json:"conv"`
	// Message is the platform's message id (Telegram message_id, Slack
	// ts); for a thread, the message it hangs off, if any.
	Message string `json:"msg,omitempty"`
	// Thread is the thread or forum topic the object is in or, for a
	// RefThread, is (Telegram message_thread_id, Slack thread_ts).
	Thread string `json:"thread,omitempty"`
	// Extra is what the adapter needs to redraw the object later (Slack:
	// the chat's first message, shown under its thread's root).
	Extra string `json:"extra,omitempty"`
}

// ActionKind says what an agent did.
type ActionKind string

// Agent actions.
const (
	// ActCommand: a command of SPEC §7 (Command without the slash, Args the rest).
	ActCommand ActionKind = "command"
	// ActMessage: text (and/or an attachment) for a chat: Chat if the platform
	// told which (reply, thread, topic), else the agent's current chat.
	ActMessage ActionKind = "message"
	// ActAccept / ActMonitor: a button on an offer for Chat.
	ActAccept  ActionKind = "accept"
	ActMonitor ActionKind = "monitor"
	// ActSwitch: make Chat the agent's current chat (/chats choice).
	ActSwitch ActionKind = "switch"
	// ActStillHere: the "Still on duty?" button.
	ActStillHere ActionKind = "still_here"
	// ActActivity: presence only (e.g. Slack says the user is active).
	ActActivity ActionKind = "activity"
)

// Action is something an agent did on a platform. The adapter has already
// checked that the user is a configured agent.
type Action struct {
	Kind    ActionKind       `json:"kind"`
	Surface string           `json:"surface"`
	Agent   presence.AgentID `json:"agent"`
	Chat    ChatID           `json:"chat,omitempty"`
	Command string           `json:"command,omitempty"`
	Args    string           `json:"args,omitempty"`
	Text    string           `json:"text,omitempty"`
	// Attachment is a file the agent sent, already stored (see Bridge.PutFile).
	Attachment *Attachment `json:"attachment,omitempty"`
	// ReplyTo is the platform object the action answers: the message an
	// agent replied to (Conversation and Message) or the thread it wrote
	// in (Conversation and Thread). When Chat is empty the bridge finds
	// the chat it belongs to (see Host.ChatOf).
	ReplyTo *RemoteRef `json:"reply_to,omitempty"`
	// DedupKey identifies the platform event ("telegram:42", "slack:Ev123");
	// an action whose key was already handled is ignored, and one being
	// handled by another instance gets ErrInProgress. Empty: no check.
	DedupKey string `json:"dedup_key,omitempty"`
	// Shared: the message was written in the property's shared place on
	// Surface (a Slack channel's chat thread, a Telegram forum topic, a
	// reply in a group), which therefore shows it already. A message
	// written elsewhere (a DM to the bot) is copied there for the team. A
	// message written in the shared place that belongs to no chat (Chat
	// empty and ReplyTo naming nothing the bridge knows) is talk among the
	// team: it counts as activity only.
	Shared bool `json:"shared,omitempty"`
}

// sharedSurface is the surface whose shared place already shows the
// action's message ("" when none does).
func (a Action) sharedSurface() string {
	if a.Shared {
		return a.Surface
	}
	return ""
}

// Reply is what the agent is told on the surface the action came from.
type Reply struct {
	// Text in plain words; empty means say nothing.
	Text string
	// Choices offer one-tap follow-ups (e.g. /chats: switch to a chat).
	Choices []Choice
	// Private asks for an answer only the agent sees (Slack ephemeral).
	Private bool
}

// Choice is a button under a reply.
type Choice struct {
	Label  string
	Action ActionKind // ActSwitch, ActAccept, ActMonitor
	Chat   ChatID
}

// Handler takes agent actions from adapters. The bridge implements it.
type Handler interface {
	Handle(ctx context.Context, a Action) (Reply, error)
}

// Host is what the bridge gives an adapter's Run: it takes the agents'
// actions, tells which chat a platform object belongs to, and keeps files.
// *Bridge implements it.
type Host interface {
	Handler
	FileStore
	// ChatOf names the chat that ref (an object the adapter surface made
	// for it, or the thread it lives in) belongs to, "" when none: what an
	// agent replied to or wrote in. Errors are Redis failures (retry).
	ChatOf(ctx context.Context, surface string, ref RemoteRef) (ChatID, error)
}

// FileStore keeps the files of chats. *Bridge implements it; adapters get
// it with their Host.
type FileStore interface {
	// PutFile stores a file's bytes for a chat (size-capped, with a TTL) and
	// returns the Attachment to put on a message or an Action.
	PutFile(ctx context.Context, id ChatID, name, mime string, data []byte) (Attachment, error)
	// File returns an attachment's bytes if it belongs to the chat.
	File(ctx context.Context, id ChatID, key string) (Attachment, []byte, error)
}
