package presence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnknownAgent is returned for an agent id that is not configured.
var ErrUnknownAgent = errors.New("presence: unknown agent")

// Store keeps agent states in Redis and announces every change on a pub/sub
// channel. It makes no decisions beyond atomic updates: the rules are in rules.go.
type Store struct {
	rdb  redis.UniversalClient
	dir  *Directory
	keys Keys
	now  func() time.Time
}

// NewStore returns a store over rdb. now may be nil (time.Now).
func NewStore(rdb redis.UniversalClient, dir *Directory, keys Keys, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, dir: dir, keys: keys, now: now}
}

// Directory returns the configured agents and properties.
func (s *Store) Directory() *Directory { return s.dir }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// updateScript changes one agent's hash and announces the result.
var updateScript = redis.NewScript(`
-- KEYS[1]  the agent's state hash
-- ARGV[1]  pub/sub channel        ARGV[2] agent id
-- ARGV[3]  field to set, or ''    ARGV[4] its value
-- ARGV[5]  now, unix ms           ARGV[6] '1' if this is activity
-- ARGV[7]  status to take if none was ever chosen (first contact), or ''
-- Returns the announcement: id, version, status, condition, last activity (tab-separated).
local k = KEYS[1]
if ARGV[3] ~= '' then redis.call('HSET', k, ARGV[3], ARGV[4]) end
if ARGV[6] == '1' then
  local last = tonumber(redis.call('HGET', k, 'last_activity') or '0')
  if tonumber(ARGV[5]) > last then redis.call('HSET', k, 'last_activity', ARGV[5]) end
end
if ARGV[7] ~= '' and redis.call('HEXISTS', k, 'status') == 0 then
  redis.call('HSET', k, 'status', ARGV[7])
end
local ver = redis.call('HINCRBY', k, 'version', 1)
local s = redis.call('HMGET', k, 'status', 'condition', 'last_activity')
local msg = ARGV[2] .. '\t' .. ver .. '\t' .. (s[1] or '') .. '\t' .. (s[2] or '') .. '\t' .. (s[3] or '')
redis.call('PUBLISH', ARGV[1], msg)
return msg
`)

type update struct {
	field, value string
	activity     bool
	firstContact Status
}

func (s *Store) apply(ctx context.Context, id AgentID, u update) (State, error) {
	if _, ok := s.dir.Agent(id); !ok {
		return State{}, fmt.Errorf("%w %q", ErrUnknownAgent, id)
	}
	act := "0"
	if u.activity {
		act = "1"
	}
	res, err := updateScript.Run(ctx, s.rdb, []string{s.keys.Agent(id)},
		s.keys.Channel(), string(id), u.field, u.value,
		s.now().UnixMilli(), act, string(u.firstContact)).Text()
	if err != nil {
		return State{}, fmt.Errorf("presence: update %s: %w", id, err)
	}
	_, st, err := ParseAnnouncement(res)
	return st, err
}

// SetStatus stores a status the agent chose. It counts as activity (the agent
// just acted), so an activity agent is not immediately idle.
func (s *Store) SetStatus(ctx context.Context, id AgentID, st Status) (State, error) {
	if !st.IsValid() {
		return State{}, fmt.Errorf("presence: invalid status %q", st)
	}
	return s.apply(ctx, id, update{field: "status", value: string(st), activity: true})
}

// SetCondition stores the agent's condition (/alwayson on|off).
func (s *Store) SetCondition(ctx context.Context, id AgentID, c Condition) (State, error) {
	if !c.IsValid() {
		return State{}, fmt.Errorf("presence: invalid condition %q", c)
	}
	return s.apply(ctx, id, update{field: "condition", value: string(c), activity: true})
}

// Touch records activity: a message, command or button press. An agent who
// never chose a status becomes online on first contact (SPEC §2).
func (s *Store) Touch(ctx context.Context, id AgentID) (State, error) {
	return s.apply(ctx, id, update{activity: true, firstContact: Online})
}

// QueueTouch is Touch queued on pipe (a pipeline of the store's Redis), so
// that the caller sends it with commands of its own in one round trip. The
// function it returns gives Touch's answer once pipe ran (running Touch
// itself if Redis did not have the script yet).
func (s *Store) QueueTouch(ctx context.Context, pipe redis.Pipeliner, id AgentID) func() (State, error) {
	if _, ok := s.dir.Agent(id); !ok {
		return func() (State, error) { return State{}, fmt.Errorf("%w %q", ErrUnknownAgent, id) }
	}
	cmd := updateScript.EvalSha(ctx, pipe, []string{s.keys.Agent(id)},
		s.keys.Channel(), string(id), "", "", s.now().UnixMilli(), "1", string(Online))
	return func() (State, error) {
		res, err := cmd.Text()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return s.Touch(ctx, id)
		}
		if err != nil {
			return State{}, fmt.Errorf("presence: update %s: %w", id, err)
		}
		_, st, err := ParseAnnouncement(res)
		return st, err
	}
}

// Init gives agents with an initial status (the demo agent) that status if
// they never chose one. It is safe to call from every instance.
func (s *Store) Init(ctx context.Context) error {
	for _, id := range s.dir.Agents() {
		a, _ := s.dir.Agent(id)
		if !a.InitialStatus.IsValid() || a.InitialStatus == Offline {
			continue
		}
		if _, err := s.apply(ctx, id, update{firstContact: a.InitialStatus}); err != nil {
			return err
		}
	}
	return nil
}

// Get loads one agent's state.
func (s *Store) Get(ctx context.Context, id AgentID) (State, error) {
	m, err := s.GetMany(ctx, []AgentID{id})
	if err != nil {
		return State{}, err
	}
	return m[id], nil
}

// GetMany loads the states of the given agents in one pipeline.
func (s *Store) GetMany(ctx context.Context, ids []AgentID) (map[AgentID]State, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.keys.Agent(id), "status", "condition", "last_activity", "version")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("presence: load states: %w", err)
	}
	out := make(map[AgentID]State, len(ids))
	for i, id := range ids {
		v := cmds[i].Val()
		str := func(j int) string {
			if j < len(v) {
				if x, ok := v[j].(string); ok {
					return x
				}
			}
			return ""
		}
		st, err := stateFrom(str(0), str(1), str(2), str(3))
		if err != nil {
			return nil, fmt.Errorf("presence: state of %s: %w", id, err)
		}
		out[id] = st
	}
	return out, nil
}

// Views loads the agents of a property with their states.
func (s *Store) Views(ctx context.Context, p PropertyID) ([]AgentView, error) {
	ids := s.dir.AgentsOf(p)
	states, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]AgentView, 0, len(ids))
	for _, id := range ids {
		a, _ := s.dir.Agent(id)
		out = append(out, AgentView{Agent: a, State: states[id]})
	}
	return out, nil
}

// Report computes a property's widget status with reasons, straight from Redis.
func (s *Store) Report(ctx context.Context, p PropertyID) (Report, error) {
	prop, ok := s.dir.Property(p)
	if !ok {
		return Report{}, fmt.Errorf("presence: unknown property %q", p)
	}
	views, err := s.Views(ctx, p)
	if err != nil {
		return Report{}, err
	}
	return Widget(prop, views, s.now()), nil
}

// ParseAnnouncement decodes a message from the presence channel.
func ParseAnnouncement(msg string) (AgentID, State, error) {
	f := strings.Split(msg, "\t")
	if len(f) != 5 {
		return "", State{}, fmt.Errorf("presence: malformed announcement %q", msg)
	}
	st, err := stateFrom(f[2], f[3], f[4], f[1])
	return AgentID(f[0]), st, err
}

func stateFrom(status, cond, last, ver string) (State, error) {
	var st State
	if status != "" {
		st.Status = Status(status)
		if !st.Status.IsValid() {
			return State{}, fmt.Errorf("stored status %q", status)
		}
	}
	if cond != "" {
		st.Condition = Condition(cond)
		if !st.Condition.IsValid() {
			return State{}, fmt.Errorf("stored condition %q", cond)
		}
	}
	if last != "" {
		ms, err := strconv.ParseInt(last, 10, 64)
		if err != nil {
			return State{}, fmt.Errorf("stored last_activity %q", last)
		}
		st.LastActivity = time.UnixMilli(ms)
	}
	if ver != "" {
		v, err := strconv.ParseInt(ver, 10, 64)
		if err != nil {
			return State{}, fmt.Errorf("stored version %q", ver)
		}
		st.Version = v
	}
	return st, nil
}
