package slack

import "github.com/onduty/onduty/presence"

// keys builds every Redis key of the Slack adapter. It keeps no chat state:
// what it posted for a chat (the root a chat's thread hangs off, thread →
// chat), what a delivery already showed and which events were handled are
// the bridge's (Deliver's refs, Action.DedupKey). Only what concerns Slack
// alone is here:
//
//	key                               type    content                           expiry
//	slack:refused:USER                string  "1": the refusal was sent         refusalTTL (24h)
//	slack:poll:AGENT                  string  "1": presence polled recently     poll period
//
// Keys of earlier versions, moved into the bridge's records at start and
// deleted (MigrateRefs): slack:root:{chat}:TARGET (hash channel, ts,
// first), slack:thread:CHANNEL:TS, slack:event:DEDUP, slack:dlv:ID[:STEP].
type keys struct{ prefix string }

func (k keys) p() string {
	if k.prefix == "" {
		return "onduty:"
	}
	return k.prefix
}

func (k keys) refused(user string) string     { return k.p() + "slack:refused:" + user }
func (k keys) poll(a presence.AgentID) string { return k.p() + "slack:poll:" + string(a) }
