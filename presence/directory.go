package presence

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Directory is the configured agents and properties, fixed for the life of the
// process. It is safe for concurrent reads.
type Directory struct {
	agents     map[AgentID]Agent
	properties map[PropertyID]Property
	byProperty map[PropertyID][]AgentID
	agentOrder []AgentID
	propOrder  []PropertyID
	// byAccount finds an agent by a surface and the account id there.
	byAccount map[Surface]map[string]AgentID
	// surfaceOrder is the order Surfaces lists an agent's chat apps in.
	surfaceOrder []Surface
}

// NewDirectory indexes agents and properties. Agents naming an unknown
// property are an error: configuration validation should have caught them
// (as it catches two agents sharing one account; should they, the first
// configured is the one AgentByAccount finds). surfaceOrder is the order Surfaces
// lists an agent's chat apps in (as configuration shows them); surfaces it
// does not name come after, sorted by name.
func NewDirectory(props []Property, agents []Agent, surfaceOrder ...Surface) (*Directory, error) {
	d := &Directory{
		agents:       make(map[AgentID]Agent, len(agents)),
		properties:   make(map[PropertyID]Property, len(props)),
		byProperty:   make(map[PropertyID][]AgentID, len(props)),
		byAccount:    map[Surface]map[string]AgentID{},
		surfaceOrder: slices.Clone(surfaceOrder),
	}
	for _, p := range props {
		if _, dup := d.properties[p.ID]; dup {
			return nil, fmt.Errorf("presence: duplicate property %q", p.ID)
		}
		d.properties[p.ID] = p
		d.propOrder = append(d.propOrder, p.ID)
	}
	for _, a := range agents {
		if _, dup := d.agents[a.ID]; dup {
			return nil, fmt.Errorf("presence: duplicate agent %q", a.ID)
		}
		for _, p := range a.Properties {
			if _, ok := d.properties[p]; !ok {
				return nil, fmt.Errorf("presence: agent %q names unknown property %q", a.ID, p)
			}
			d.byProperty[p] = append(d.byProperty[p], a.ID)
		}
		d.indexAccounts(a)
		d.agents[a.ID] = a
		d.agentOrder = append(d.agentOrder, a.ID)
	}
	for p := range d.byProperty {
		sort.Slice(d.byProperty[p], func(i, j int) bool { return d.byProperty[p][i] < d.byProperty[p][j] })
	}
	return d, nil
}

// Agent returns the configured agent.
func (d *Directory) Agent(id AgentID) (Agent, bool) {
	a, ok := d.agents[id]
	return a, ok
}

// Property returns the configured property.
func (d *Directory) Property(id PropertyID) (Property, bool) {
	p, ok := d.properties[id]
	return p, ok
}

// Agents lists every agent id in configuration order.
func (d *Directory) Agents() []AgentID { return slices.Clone(d.agentOrder) }

// Properties lists every property id in configuration order.
func (d *Directory) Properties() []PropertyID { return slices.Clone(d.propOrder) }

// AgentsOf lists the agents of a property, sorted by id.
func (d *Directory) AgentsOf(p PropertyID) []AgentID { return slices.Clone(d.byProperty[p]) }

// AgentByName finds an agent by id or by name, ignoring case.
func (d *Directory) AgentByName(name string) (Agent, bool) {
	if a, ok := d.agents[AgentID(name)]; ok {
		return a, true
	}
	for _, id := range d.agentOrder {
		if strings.EqualFold(d.agents[id].Name, name) || strings.EqualFold(string(id), name) {
			return d.agents[id], true
		}
	}
	return Agent{}, false
}

// AgentByAccount finds the agent whose account on surface is id.
func (d *Directory) AgentByAccount(surface Surface, id string) (Agent, bool) {
	if id == "" {
		return Agent{}, false
	}
	aid, ok := d.byAccount[surface][id]
	if !ok {
		return Agent{}, false
	}
	return d.agents[aid], true
}

// Surfaces lists the chat apps the agent answers from, in the directory's
// surface order; nil for an unknown agent.
func (d *Directory) Surfaces(id AgentID) []Surface {
	a, ok := d.agents[id]
	if !ok {
		return nil
	}
	out := make([]Surface, 0, len(a.Accounts))
	for _, s := range d.surfaceOrder {
		if a.Accounts[s] != "" {
			out = append(out, s)
		}
	}
	var rest []Surface
	for s, acc := range a.Accounts {
		if acc != "" && !slices.Contains(d.surfaceOrder, s) {
			rest = append(rest, s)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

func (d *Directory) indexAccounts(a Agent) {
	for s, acc := range a.Accounts {
		if acc == "" {
			continue
		}
		if _, dup := d.byAccount[s][acc]; dup {
			continue
		}
		if d.byAccount[s] == nil {
			d.byAccount[s] = map[string]AgentID{}
		}
		d.byAccount[s][acc] = a.ID
	}
}
