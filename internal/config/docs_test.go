package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// configKeys lists every key of the file format, as docs/CONFIG.md names
// them: "listen", "properties[].assignment.max_chats", "telegram.token";
// a map is one key ("properties[].schedule.hours").
func configKeys(prefix string, t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for name, ft := range yamlFields(t) {
		key := join(prefix, name)
		et := ft
		for et.Kind() == reflect.Pointer {
			et = et.Elem()
		}
		switch {
		case et.Kind() == reflect.Struct && et != durationType:
			out = append(out, configKeys(key, et)...)
		case et.Kind() == reflect.Slice && elem(et).Kind() == reflect.Struct:
			out = append(out, configKeys(key+"[]", elem(et))...)
		default:
			out = append(out, key)
		}
	}
	return out
}

func elem(t reflect.Type) reflect.Type {
	t = t.Elem()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// TestConfigDocumented: every key of the Config struct is in
// docs/CONFIG.md as a row "| `key.path` |" (with its default and an
// example). A key added without its row fails here, naming the row to add.
func TestConfigDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	keys := configKeys("", reflect.TypeFor[Config]())
	if len(keys) < 40 {
		t.Fatalf("only %d keys found: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(doc, "| `"+k+"` |") {
			t.Errorf("docs/CONFIG.md does not document the key %s: add a row | `%s` | default | example | meaning |", k, k)
		}
	}
}
