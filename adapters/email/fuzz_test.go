package email

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
)

// FuzzCompose: whatever the names, property and texts, an email has exactly
// the headers compose sets, one recipient, and parses.
func FuzzCompose(f *testing.F) {
	f.Add("Vic", "Acme", "hello", "Alice")
	f.Add("Vic\r\nBcc: all@example.com", "Acme\nX-Evil: 1", "<script>alert(1)</script>", "Al\rice")
	f.Add("=?utf-8?q?=0D=0ABcc:_x@y?=", "Ac\x00me", "line\r\n.\r\nQUIT", "\u2028")
	from, _ := mail.ParseAddress("Acme Support <support@acme.example>")
	f.Fuzz(func(t *testing.T, name, prop, text, agent string) {
		d := bridge.Delivery{ID: "d", Kind: bridge.KindEmail, Chat: bridge.Chat{ID: "c"}, Email: &bridge.Email{
			Kind: bridge.EmailReplies, To: "vic@example.com", ToName: name, Property: prop,
			Messages: []bridge.Message{{From: bridge.FromAgent, Name: agent, Text: text, At: time.Unix(0, 0)}},
		}}
		msg, err := compose(from, d)
		if err != nil {
			return // refused for good is fine; injected is not
		}
		var buf bytes.Buffer
		if _, err := msg.WriteTo(&buf); err != nil {
			t.Fatalf("write: %v", err)
		}
		m, err := mail.ReadMessage(&buf)
		if err != nil {
			t.Fatalf("unparsable email: %v\n%s", err, buf.String())
		}
		for k := range m.Header {
			switch strings.ToLower(k) {
			case "from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version", "content-type", "user-agent", "x-mailer", "content-transfer-encoding":
			default:
				t.Errorf("unexpected header %q: %v", k, m.Header[k])
			}
		}
		to, err := m.Header.AddressList("To")
		if err != nil || len(to) != 1 || to[0].Address != "vic@example.com" {
			t.Errorf("To %v %v", to, err)
		}
	})
}
