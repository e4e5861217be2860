package presence

// Keys builds every Redis key and channel name of the presence package. Agent
// state is per agent, not per property, so each agent's key carries its own
// hash tag; no presence script touches more than one key.
type Keys struct {
	// Prefix starts every key; zero means "onduty:". Tests use a unique one.
	Prefix string
}

func (k Keys) prefix() string {
	if k.Prefix == "" {
		return "onduty:"
	}
	return k.Prefix
}

// Agent is the hash holding one agent's state.
func (k Keys) Agent(id AgentID) string { return k.prefix() + "agent:{" + string(id) + "}" }

// Channel is the pub/sub channel on which every stored change is announced.
func (k Keys) Channel() string { return k.prefix() + "presence" }
