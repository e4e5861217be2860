package widget

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/onduty/onduty/internal/wait"
	"github.com/onduty/onduty/presence"
)

// lookDirectory has one property with a configured look (acme) and one
// without (demo).
func lookDirectory(t testing.TB, look presence.Look) *presence.Directory {
	t.Helper()
	dir, err := presence.NewDirectory(
		[]presence.Property{
			{ID: propDemo, Name: "Demo", OfflineMode: presence.ModeForm},
			{ID: propAcme, Name: "Acme", OfflineMode: presence.ModeForm, Look: look},
		},
		[]presence.Agent{{ID: agentAlice, Name: "Alice Smith", Properties: []presence.PropertyID{propDemo, propAcme}, Condition: presence.Always}})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStatusCarriesLook: the status JSON tells the widget the property's
// look, and its ETag still lets an unchanged status answer 304.
func TestStatusCarriesLook(t *testing.T) {
	look := presence.Look{Color: "#0f766e", Position: "left", Title: "Acme support", Language: "de"}
	e := newEnvDir(t, lookDirectory(t, look))
	e.runWatcher()
	wait.For(t, "watcher in sync", func() bool { return !e.watcher.Stale() })

	tests := []struct {
		prop presence.PropertyID
		want string // part of the body; "" means no widget object at all
	}{
		{propAcme, `"widget":{"color":"#0f766e","position":"left","title":"Acme support","language":"de"}`},
		{propDemo, ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.prop), func(t *testing.T) {
			r := e.do("GET", "/v1/properties/"+string(tt.prop)+"/status", nil)
			if r.code != http.StatusOK {
				t.Fatalf("status: %d %s", r.code, r.body)
			}
			body := string(r.body)
			if tt.want == "" && strings.Contains(body, `"widget"`) || tt.want != "" && !strings.Contains(body, tt.want) {
				t.Errorf("body %s, want %q", body, tt.want)
			}
			var st presence.WidgetStatus
			r.json(t, &st)
			if tt.prop == propAcme && st.Widget != look {
				t.Errorf("decoded look %+v", st.Widget)
			}
			again := e.do("GET", "/v1/properties/"+string(tt.prop)+"/status", nil, "If-None-Match", r.header.Get("ETag"))
			if again.code != http.StatusNotModified {
				t.Errorf("same ETag: %d, want 304", again.code)
			}
		})
	}
}

func TestCompactJS(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"comment lines go", "a();\n  // why\nb();\n", "a();\nb();\n"},
		{"indentation goes", "if (x) {\n    y();\n  }\n", "if (x) {\ny();\n}\n"},
		{"blank lines go", "a();\n\n\t\nb();", "a();\nb();\n"},
		{"a comment after code stays", "a(); // why\n", "a(); // why\n"},
		{"a URL in a string stays", "  var u = \"https://x\";\n", "var u = \"https://x\";\n"},
		{"block comments stay", "/* head\n   more */\n", "/* head\nmore */\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(compactJS([]byte(tt.in))); got != tt.want {
				t.Errorf("compactJS(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if !bytes.Contains(widgetSource, []byte("\n  // ")) || bytes.Contains(widgetJS, []byte("\n// ")) {
		t.Error("widget.js is served with its comment lines")
	}
}
