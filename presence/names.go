package presence

// AgentName is how people are shown an agent: the configured name, else the
// agent's id.
func (d *Directory) AgentName(id AgentID) string {
	if a, ok := d.Agent(id); ok && a.Name != "" {
		return a.Name
	}
	return string(id)
}

// PropertyName is how people are shown a property (a website): the
// configured name, else the property's id.
func (d *Directory) PropertyName(id PropertyID) string {
	if p, ok := d.Property(id); ok && p.Name != "" {
		return p.Name
	}
	return string(id)
}
