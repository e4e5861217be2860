package widget

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// fakeChats is an in-memory Bridge: random tokens checked in constant time,
// transcripts with stream-style ids, events fanned out to subscribers.
// Agents are played by the test (Join, Reply, CloseByAgent); presence set
// by the admin goes to the env's store, as the bridge's does.
type fakeChats struct {
	mu      sync.Mutex
	props   map[presence.PropertyID]bool
	chats   map[bridge.ChatID]*fakeChat
	offline []fakeOffline
	subs    map[bridge.ChatID]map[*fakeSub]struct{}
	seq     int64
	calls   []string
	// fail, when set, is returned by every call (storage down).
	fail error
	// admin capabilities
	actions    []bridge.Action
	boardCalls int
	countCalls int
	// presence is where SetPresence writes (the env's store).
	presence *presence.Store
}

type fakeChat struct {
	chat  bridge.Chat
	token string
	msgs  []bridge.Message
	files map[string][]byte
	atts  map[string]bridge.Attachment // what PutFile stored, by key
}

type fakeOffline struct {
	Property presence.PropertyID
	Visitor  bridge.Visitor
	Text     string
}

type fakeSub struct{ ch chan bridge.VisitorEvent }

// The fake and the bridge both implement everything the widget uses.
var (
	_ Bridge = (*fakeChats)(nil)
	_ Bridge = (*bridge.Bridge)(nil)
)

func newFakeChats(props ...presence.PropertyID) *fakeChats {
	f := &fakeChats{props: map[presence.PropertyID]bool{}, chats: map[bridge.ChatID]*fakeChat{}, subs: map[bridge.ChatID]map[*fakeSub]struct{}{}}
	for _, p := range props {
		f.props[p] = true
	}
	return f
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// nextID returns a stream-style id; ids grow within the fake.
func (f *fakeChats) nextID() string {
	f.seq++
	return fmt.Sprintf("%d-%d", 1700000000000+f.seq/3, f.seq%3)
}

func (f *fakeChats) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls lists what was called, in order.
func (f *fakeChats) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeChats) SetFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func validText(s string) bool {
	n := utf8.RuneCountInString(s)
	return utf8.ValidString(s) && strings.TrimSpace(s) != "" && n <= bridge.MaxTextRunes
}

func (f *fakeChats) StartChat(ctx context.Context, p presence.PropertyID, v bridge.Visitor, text string) (bridge.Chat, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartChat %s %q", p, text)
	if f.fail != nil {
		return bridge.Chat{}, "", f.fail
	}
	if !f.props[p] {
		return bridge.Chat{}, "", bridge.ErrUnknownProperty
	}
	if !validText(text) {
		return bridge.Chat{}, "", bridge.ErrInvalidText
	}
	now := time.Now()
	c := &fakeChat{
		chat:  bridge.Chat{ID: bridge.ChatID(randomString(12)), Property: p, State: bridge.Pending, Visitor: v, CreatedAt: now, LastMessageAt: now},
		token: randomString(24),
		files: map[string][]byte{}, atts: map[string]bridge.Attachment{},
	}
	c.msgs = append(c.msgs, bridge.Message{ID: f.nextID(), Chat: c.chat.ID, From: bridge.FromVisitor, Text: text, At: now})
	f.chats[c.chat.ID] = c
	metrics.ChatsStarted.WithLabelValues(string(p)).Inc() // the bridge counts chats, not the widget
	return c.chat, c.token, nil
}

func (f *fakeChats) AuthVisitor(ctx context.Context, id bridge.ChatID, token string) (bridge.Chat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return bridge.Chat{}, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return bridge.Chat{}, bridge.ErrUnknownChat
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(c.token)) != 1 {
		return bridge.Chat{}, bridge.ErrBadToken
	}
	return c.chat, nil
}

func (f *fakeChats) PostVisitorMessage(ctx context.Context, id bridge.ChatID, text string, att *bridge.Attachment) (bridge.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("PostVisitorMessage %s %q", id, text)
	if f.fail != nil {
		return bridge.Message{}, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return bridge.Message{}, bridge.ErrUnknownChat
	}
	if c.chat.State == bridge.Closed {
		return bridge.Message{}, bridge.ErrChatClosed
	}
	if (att == nil || text != "") && !validText(text) {
		return bridge.Message{}, bridge.ErrInvalidText
	}
	m := bridge.Message{ID: f.nextID(), Chat: id, From: bridge.FromVisitor, Text: text, At: time.Now(), Attachment: att}
	c.msgs = append(c.msgs, m)
	f.publish(id, bridge.VisitorEvent{Type: bridge.EventMessage, Chat: id, Message: &m})
	return m, nil
}

func (f *fakeChats) Transcript(ctx context.Context, id bridge.ChatID, after string, limit int) ([]bridge.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return nil, bridge.ErrUnknownChat
	}
	var out []bridge.Message
	for _, m := range c.msgs {
		if m.Note || (after != "" && !messageAfter(m.ID, after)) {
			continue
		}
		out = append(out, m)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (f *fakeChats) CloseByVisitor(ctx context.Context, id bridge.ChatID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CloseByVisitor %s", id)
	if f.fail != nil {
		return f.fail
	}
	return f.closeLocked(id, "visitor")
}

func (f *fakeChats) closeLocked(id bridge.ChatID, by string) error {
	c, ok := f.chats[id]
	if !ok {
		return bridge.ErrUnknownChat
	}
	if c.chat.State == bridge.Closed {
		return bridge.ErrChatClosed
	}
	c.chat.State, c.chat.ClosedBy = bridge.Closed, by
	f.publish(id, bridge.VisitorEvent{Type: bridge.EventChatClosed, Chat: id, Reason: by})
	return nil
}

func (f *fakeChats) LeaveOfflineMessage(ctx context.Context, p presence.PropertyID, v bridge.Visitor, text string) (bridge.Chat, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("LeaveOfflineMessage %s %s %q", p, v.Email, text)
	if f.fail != nil {
		return bridge.Chat{}, "", f.fail
	}
	if !f.props[p] {
		return bridge.Chat{}, "", bridge.ErrUnknownProperty
	}
	if !validText(text) {
		return bridge.Chat{}, "", bridge.ErrInvalidText
	}
	f.offline = append(f.offline, fakeOffline{Property: p, Visitor: v, Text: text})
	now := time.Now()
	c := &fakeChat{
		chat:  bridge.Chat{ID: bridge.ChatID(randomString(12)), Property: p, State: bridge.Pending, Visitor: v, Offline: true, CreatedAt: now, LastMessageAt: now},
		token: randomString(24),
		files: map[string][]byte{}, atts: map[string]bridge.Attachment{},
	}
	c.msgs = append(c.msgs, bridge.Message{ID: f.nextID(), Chat: c.chat.ID, From: bridge.FromVisitor, Text: text, At: now})
	f.chats[c.chat.ID] = c
	return c.chat, c.token, nil
}

func (f *fakeChats) PropertyOf(ctx context.Context, id bridge.ChatID) (presence.PropertyID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return "", bridge.ErrUnknownChat
	}
	return c.chat.Property, nil
}

func (f *fakeChats) MarkRead(ctx context.Context, id bridge.ChatID, msgID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("MarkRead %s %s", id, msgID)
	return f.fail
}

func (f *fakeChats) EmailTranscript(ctx context.Context, id bridge.ChatID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("EmailTranscript %s", id)
	if f.fail != nil {
		return f.fail
	}
	c, ok := f.chats[id]
	switch {
	case !ok:
		return bridge.ErrUnknownChat
	case c.chat.Visitor.Email == "":
		return bridge.ErrNoEmail
	}
	return nil
}

func (f *fakeChats) Rate(ctx context.Context, id bridge.ChatID, score int, comment string) (bridge.Rating, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Rate %s %d %q", id, score, comment)
	if f.fail != nil {
		return bridge.Rating{}, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return bridge.Rating{}, bridge.ErrUnknownChat
	}
	if c.chat.State != bridge.Closed {
		return bridge.Rating{}, bridge.ErrChatOpen
	}
	rt := bridge.Rating{Score: score, Comment: comment, At: time.Now()}
	c.chat.Rating = &rt
	return rt, nil
}

// Offline lists the offline messages left.
func (f *fakeChats) Offline() []fakeOffline {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeOffline(nil), f.offline...)
}

func (f *fakeChats) SubscribeVisitor(id bridge.ChatID) (<-chan bridge.VisitorEvent, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSub{ch: make(chan bridge.VisitorEvent, 64)}
	if f.subs[id] == nil {
		f.subs[id] = map[*fakeSub]struct{}{}
	}
	f.subs[id][s] = struct{}{}
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			delete(f.subs[id], s)
			close(s.ch)
		})
	}
}

// Subscribers is the number of open subscriptions of a chat.
func (f *fakeChats) Subscribers(id bridge.ChatID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs[id])
}

// publish hands ev to every subscriber; a full buffer drops it, as a slow
// consumer of the real fan-out would (the client catches up via Last-Event-ID).
func (f *fakeChats) publish(id bridge.ChatID, ev bridge.VisitorEvent) {
	for s := range f.subs[id] {
		select {
		case s.ch <- ev:
		default:
		}
	}
}

func (f *fakeChats) File(ctx context.Context, id bridge.ChatID, key string) (bridge.Attachment, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return bridge.Attachment{}, nil, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return bridge.Attachment{}, nil, bridge.ErrUnknownChat
	}
	data, ok := c.files[key]
	if !ok {
		return bridge.Attachment{}, nil, fmt.Errorf("fake: no file %q", key)
	}
	if att, ok := c.atts[key]; ok {
		return att, data, nil
	}
	return bridge.Attachment{Key: key, Name: "f.txt", MIME: "text/plain", Size: int64(len(data))}, data, nil
}

// PutFile stores a file for a chat, as the bridge does.
func (f *fakeChats) PutFile(ctx context.Context, id bridge.ChatID, name, mime string, data []byte) (bridge.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("PutFile %s %q %s %d", id, name, mime, len(data))
	if f.fail != nil {
		return bridge.Attachment{}, f.fail
	}
	c, ok := f.chats[id]
	if !ok {
		return bridge.Attachment{}, bridge.ErrUnknownChat
	}
	att := bridge.Attachment{Key: randomString(9), Name: name, MIME: mime, Size: int64(len(data))}
	c.files[att.Key], c.atts[att.Key] = data, att
	return att, nil
}

// ReplyFile stores an agent's message with a file and tells the visitor.
func (f *fakeChats) ReplyFile(id bridge.ChatID, name, text string, att bridge.Attachment, data []byte) bridge.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.chats[id]
	c.files[att.Key], c.atts[att.Key] = data, att
	m := bridge.Message{ID: f.nextID(), Chat: id, From: bridge.FromAgent, Name: name, Text: text, At: time.Now(), Attachment: &att}
	c.msgs = append(c.msgs, m)
	f.publish(id, bridge.VisitorEvent{Type: bridge.EventMessage, Chat: id, Message: &m})
	return m
}

// Join makes agent the owner and tells the visitor.
func (f *fakeChats) Join(id bridge.ChatID, agent presence.AgentID, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.chats[id]
	c.chat.State, c.chat.Owner = bridge.Active, agent
	f.publish(id, bridge.VisitorEvent{Type: bridge.EventAgentJoined, Chat: id, Agent: name})
}

// Reply stores an agent message (or a note) and tells the visitor.
func (f *fakeChats) Reply(id bridge.ChatID, agent presence.AgentID, name, text string, note bool) bridge.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.chats[id]
	m := bridge.Message{ID: f.nextID(), Chat: id, From: bridge.FromAgent, Agent: agent, Name: name, Text: text, Note: note, At: time.Now()}
	c.msgs = append(c.msgs, m)
	if !note {
		f.publish(id, bridge.VisitorEvent{Type: bridge.EventMessage, Chat: id, Message: &m})
	}
	return m
}

// CloseByAgent closes the chat from the agent side.
func (f *fakeChats) CloseByAgent(id bridge.ChatID, agent presence.AgentID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.closeLocked(id, "agent:"+string(agent))
}

// Chat returns the stored chat.
func (f *fakeChats) Chat(id bridge.ChatID) (bridge.Chat, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.chats[id]
	if !ok {
		return bridge.Chat{}, false
	}
	return c.chat, true
}

// Chats lists every chat id.
func (f *fakeChats) ChatIDs() []bridge.ChatID {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bridge.ChatID
	for id := range f.chats {
		out = append(out, id)
	}
	return out
}

// Board lists the fake's open chats like the bridge does.
func (f *fakeChats) Board(ctx context.Context, p presence.PropertyID) (bridge.BoardChats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boardCalls++
	if f.fail != nil {
		return bridge.BoardChats{}, f.fail
	}
	if !f.props[p] {
		return bridge.BoardChats{}, bridge.ErrUnknownProperty
	}
	now := time.Now()
	out := bridge.BoardChats{Property: p, At: now, Pending: []bridge.BoardChat{}, Active: []bridge.BoardChat{}, Offline: []bridge.BoardChat{}}
	for _, c := range f.chats {
		ch := c.chat
		if ch.Property != p || ch.State == bridge.Closed {
			continue
		}
		bc := bridge.BoardChat{ID: ch.ID, State: ch.State, Visitor: ch.Visitor, Owner: ch.Owner, CreatedAt: ch.CreatedAt, LastMessageAt: ch.LastMessageAt}
		if len(c.msgs) > 0 {
			m := c.msgs[len(c.msgs)-1]
			bc.Last = &bridge.BoardLine{From: m.From, Name: m.Name, Text: m.Text, Note: m.Note, At: m.At}
		}
		if ch.Owner == "" {
			bc.WaitingSeconds = int64(now.Sub(ch.CreatedAt) / time.Second)
			out.Pending = append(out.Pending, bc)
			out.Counts.Pending++
		} else {
			bc.OwnerName = string(ch.Owner)
			out.Active = append(out.Active, bc)
			out.Counts.Active++
		}
	}
	return out, nil
}

// BoardCalls is how many times Board was called.
func (f *fakeChats) BoardCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boardCalls
}

// ChatCounts counts open chats per property.
func (f *fakeChats) ChatCounts(ctx context.Context) (map[presence.PropertyID]bridge.ChatCounts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countCalls++
	if f.fail != nil {
		return nil, f.fail
	}
	out := map[presence.PropertyID]bridge.ChatCounts{}
	for p := range f.props {
		out[p] = bridge.ChatCounts{}
	}
	for _, c := range f.chats {
		cc := out[c.chat.Property]
		switch {
		case c.chat.State == bridge.Closed:
		case c.chat.Owner == "":
			cc.Pending++
		default:
			cc.Active++
		}
		out[c.chat.Property] = cc
	}
	return out, nil
}

// CountCalls is how many times ChatCounts was called.
func (f *fakeChats) CountCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.countCalls
}

// Handle records an agent action and answers with what it was.
func (f *fakeChats) Handle(ctx context.Context, a bridge.Action) (bridge.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, a)
	if f.fail != nil {
		return bridge.Reply{}, f.fail
	}
	r := bridge.Reply{Text: "handled " + string(a.Kind)}
	if a.Kind == bridge.ActCommand && a.Command == "chats" {
		for id := range f.chats {
			r.Choices = append(r.Choices, bridge.Choice{Label: "Switch", Action: bridge.ActSwitch, Chat: id})
		}
	}
	return r, nil
}

// Actions lists the agent actions handled.
func (f *fakeChats) Actions() []bridge.Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bridge.Action(nil), f.actions...)
}

// Messages is a copy of a chat's stored messages, notes included.
func (f *fakeChats) Messages(id bridge.ChatID) []bridge.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.chats[id]
	if !ok {
		return nil
	}
	return append([]bridge.Message(nil), c.msgs...)
}

// SetPresence sets an agent's presence in the fake's store, as the bridge
// does (condition first, then status).
func (f *fakeChats) SetPresence(ctx context.Context, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error) {
	f.mu.Lock()
	store := f.presence
	f.mu.Unlock()
	return setPresence(ctx, store, id, s, c)
}

// setPresence is the bridge's SetPresence without its consequences.
func setPresence(ctx context.Context, store *presence.Store, id presence.AgentID, s presence.Status, c presence.Condition) (presence.State, error) {
	if store == nil {
		return presence.State{}, errors.New("fake: no presence store")
	}
	var st presence.State
	var err error
	if c != "" {
		if st, err = store.SetCondition(ctx, id, c); err != nil {
			return st, fmt.Errorf("fake: set condition: %w", err)
		}
	}
	if s != "" {
		if st, err = store.SetStatus(ctx, id, s); err != nil {
			return st, fmt.Errorf("fake: set status: %w", err)
		}
	}
	return st, nil
}

// EraseVisitor deletes the chats of an email address, or one chat.
func (f *fakeChats) EraseVisitor(ctx context.Context, email string, id bridge.ChatID) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("EraseVisitor %q %s", email, id)
	if f.fail != nil {
		return 0, f.fail
	}
	if (email == "") == (id == "") {
		return 0, bridge.ErrBadErasure
	}
	n := 0
	for cid, c := range f.chats {
		if cid == id || (email != "" && strings.EqualFold(c.chat.Visitor.Email, email)) {
			delete(f.chats, cid)
			n++
		}
	}
	return n, nil
}

// Blocks lists no blocks: the fake blocks nobody (the blocks tests use the bridge).
func (f *fakeChats) Blocks(ctx context.Context, p presence.PropertyID) ([]bridge.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return []bridge.Block{}, nil
}

// Unblock finds no block in force.
func (f *fakeChats) Unblock(ctx context.Context, p presence.PropertyID, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return false, f.fail
	}
	return false, nil
}
