package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// checkNode walks a YAML document beside the type it decodes into and
// reports, with its key path, every key the type does not have and every
// value it cannot hold, in the words a user of the file knows ("a
// duration", "a whole number"), never a Go type.
func checkNode(file string, n *yaml.Node, t reflect.Type) Problems {
	w := walker{file: file}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	w.walk("", n, t)
	return w.probs
}

type walker struct {
	file  string
	probs Problems
}

func (w *walker) add(key, format string, args ...any) {
	w.probs = append(w.probs, Problem{File: w.file, Key: key, Why: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

func (w *walker) walk(key string, n *yaml.Node, t reflect.Type) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value: the default
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			w.add(key, "want a duration (e.g. 10m, 1h30m), not %s", shape(n))
		} else if _, err := time.ParseDuration(n.Value); err != nil && n.Value != "0" {
			if _, num := strconv.ParseFloat(n.Value, 64); num == nil {
				w.add(key, "%q is not a duration: add a unit (e.g. %ss, %sm)", n.Value, n.Value, n.Value)
			} else {
				w.add(key, "%q is not a duration (e.g. 10m, 1h30m)", n.Value)
			}
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(key, "want a mapping (key: value lines), not %s", shape(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a merge key: its keys are checked where they are defined
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				w.add(join(key, k.Value), "unknown key")
				continue
			}
			w.walk(join(key, k.Value), v, ft)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(key, "want a mapping (key: value lines), not %s", shape(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(join(key, n.Content[i].Value), n.Content[i+1], t.Elem())
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(key, "want a list ([a, b] or lines starting with -), not %s", shape(n))
			return
		}
		for i, item := range n.Content {
			w.walk(itemKey(key, i, item), item, t.Elem())
		}
	default:
		w.scalar(key, n, t)
	}
}

func (w *walker) scalar(key string, n *yaml.Node, t reflect.Type) {
	if n.Kind != yaml.ScalarNode {
		w.add(key, "want %s, not %s", kindWords(t), shape(n))
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits()); err != nil {
			w.add(key, "%q is not %s", n.Value, kindWords(t))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits()); err != nil {
			w.add(key, "%q is not %s", n.Value, kindWords(t))
		}
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(n.Value, t.Bits()); err != nil {
			w.add(key, "%q is not %s", n.Value, kindWords(t))
		}
	case reflect.Bool:
		var b bool
		if n.Decode(&b) != nil {
			w.add(key, "%q is not %s", n.Value, kindWords(t))
		}
	}
	// Strings take any scalar.
}

// kindWords names what a value of t looks like to the person writing it.
func kindWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	}
	return "a single value"
}

// shape says what a node is: "a list", "a mapping", or the value.
func shape(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// yamlFields maps the yaml keys of a struct to their types (inline
// structs included).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// itemKey is the key of item i of a list: "agents[2] (alice)" when the item
// has an id, as Validate names it.
func itemKey(key string, i int, item *yaml.Node) string {
	k := fmt.Sprintf("%s[%d]", key, i)
	if item.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "id" && item.Content[j+1].Kind == yaml.ScalarNode && item.Content[j+1].Value != "" {
				return fmt.Sprintf("%s (%s)", k, item.Content[j+1].Value)
			}
		}
	}
	return k
}
