package config

import "testing"

// FuzzLoad feeds arbitrary documents through parsing, defaults and
// validation: a bad file must come back as problems, never a panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("properties: [{id: a, schedule: {timezone: UTC, hours: {mon: ['22:00-02:00']}}}]"))
	f.Add([]byte("agents: [{id: x, permissions: []}]\ntelegram: {}\nslack: {mode: events}"))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, probs := Parse("fuzz.yaml", data)
		if c == nil {
			if len(probs) == 0 {
				t.Fatal("no config and no problems")
			}
			return
		}
		c.applyEnv(env(nil))
		c.applyDefaults()
		if ps := c.Validate(); len(ps) == 0 && len(probs) == 0 {
			// A valid configuration must build its directory.
			if _, err := c.Directory(); err != nil {
				t.Fatalf("valid config, directory fails: %v", err)
			}
		}
	})
}
