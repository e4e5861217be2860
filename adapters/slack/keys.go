package slack

import (
	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/presence"
)

// keys builds every Redis key of the Slack adapter. Each operation touches one
// key, so hash tags only keep a chat's keys together on a cluster.
//
//	key                               type    content                           expiry
//	slack:root:{chat}:TARGET          hash    channel, ts, first (message)      rootTTL
//	slack:thread:CHANNEL:TS           string  chat id                           rootTTL
//	slack:event:DEDUP                 string  "1": a Slack event taken          dedupTTL
//	slack:dlv:DELIVERY[:STEP]         string  "1": an outbox item (step) shown  dedupTTL
//	slack:refused:USER                string  "1": the refusal was sent         refusalTTL
//	slack:poll:AGENT                  string  "1": presence polled recently     poll period
//
// TARGET is empty for the property's shared channel and the agent id for a
// chat shown in that agent's DM. DEDUP is the action's DedupKey:
// "slack:<event_id>" or "slack:trigger:<trigger_id>".
type keys struct{ prefix string }

func (k keys) p() string {
	if k.prefix == "" {
		return "onduty:"
	}
	return k.prefix
}

func (k keys) root(chat bridge.ChatID, target presence.AgentID) string {
	return k.p() + "slack:root:{" + string(chat) + "}:" + string(target)
}
func (k keys) thread(channel, ts string) string { return k.p() + "slack:thread:" + channel + ":" + ts }
func (k keys) event(id string) string           { return k.p() + "slack:event:" + id }
func (k keys) delivered(id string) string       { return k.p() + "slack:dlv:" + id }
func (k keys) refused(user string) string       { return k.p() + "slack:refused:" + user }
func (k keys) poll(a presence.AgentID) string   { return k.p() + "slack:poll:" + string(a) }
