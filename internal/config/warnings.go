package config

import (
	"fmt"
	"reflect"
	"strings"
)

// placeholders are the markers of a secret nobody filled in (the example
// configuration's "change-me", "123456:replace-me").
var placeholders = []string{"change-me", "changeme", "change_me", "replace-me", "replaceme", "replace_me"}

// Warnings lists what a configuration allows but is probably a mistake:
// secrets still holding a placeholder, and properties no agent serves
// (their widget would always show offline). They do not stop onduty.
func (c *Config) Warnings() Problems {
	var ws Problems
	secretsIn("", reflect.ValueOf(c).Elem(), func(key string, s Secret) {
		low := strings.ToLower(s.Reveal())
		for _, p := range placeholders {
			if strings.Contains(low, p) {
				ws = append(ws, Problem{File: c.File, Key: key, Why: fmt.Sprintf("looks like a placeholder (contains %q): set the real value", p)})
				return
			}
		}
	})
	served := map[string]bool{}
	for _, a := range c.Agents {
		for _, p := range a.Properties {
			served[p] = true
		}
	}
	for i, p := range c.Properties {
		if !served[p.ID] {
			ws = append(ws, Problem{File: c.File, Key: fmt.Sprintf("properties[%d] (%s)", i, p.ID),
				Why: "no agent serves this property, so its widget always shows offline: add it to an agent's properties"})
		}
	}
	return ws
}

var secretType = reflect.TypeFor[Secret]()

// secretsIn calls f with every non-empty Secret in v and its key path.
func secretsIn(key string, v reflect.Value, f func(string, Secret)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			secretsIn(key, v.Elem(), f)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			ft := t.Field(i)
			name, _, _ := strings.Cut(ft.Tag.Get("yaml"), ",")
			if !ft.IsExported() || name == "-" || name == "" {
				continue
			}
			secretsIn(join(key, name), v.Field(i), f)
		}
	case reflect.Slice:
		for i := range v.Len() {
			secretsIn(fmt.Sprintf("%s[%d]", key, i), v.Index(i), f)
		}
	case reflect.String:
		if v.Type() == secretType && v.String() != "" {
			f(key, Secret(v.String()))
		}
	}
}
