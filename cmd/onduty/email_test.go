package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/internal/redistest"
	"github.com/onduty/onduty/internal/smtptest"
	"github.com/onduty/onduty/internal/wait"
)

// TestProcessOfflineAnswerByEmail is SPEC §9 end to end in a real process:
// a visitor leaves an offline message through the API, the agent answers it
// on (fake) Telegram, and the answer arrives by email through a real SMTP
// server (STARTTLS with a test certificate, AUTH PLAIN) with a continue link
// that opens the conversation.
func TestProcessOfflineAnswerByEmail(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	api := newFakeBot(t)
	mail := smtptest.New(t)
	// The process trusts the test certificate the way it would trust a
	// private CA: through SSL_CERT_FILE.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, mail.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	file := writeFile(t, fmt.Sprintf(`
redis_url: %q
redis_prefix: %q
public_url: "http://%s"
email: {smtp_url: %q, from: "Acme Support <support@acme.example>"}
properties:
  - id: acme
    name: Acme
    email_after: 1s
agents:
  - {id: alice, name: Alice, properties: [acme], telegram_user_id: %d, condition: always, initial_status: online}
telegram: {token: %q, mode: polling}
`, r.URL, r.Prefix, addr, mail.URL(), procAlice, procToken))
	p := startProcessAt(t, "A", file, api, addr, "SSL_CERT_FILE="+ca)

	// The widget is told email works.
	resp, body := get(t, p.base+"/v1/properties/acme/status")
	if resp.StatusCode != 200 || !strings.Contains(body, `"email":true`) {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	js, _ := json.Marshal(map[string]string{"name": "Vic", "email": "vic@example.com", "text": "Please call me back"})
	res, err := http.Post(p.base+"/v1/properties/acme/offline-messages", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var c startedChat
	if res.StatusCode != 201 || json.Unmarshal(raw, &c) != nil || c.ChatID == "" || c.VisitorToken == "" {
		t.Fatalf("offline message: %d %s", res.StatusCode, raw)
	}
	wait.Within(t, 15*time.Second, "the offer on Telegram", func() bool { return api.offers(c.ChatID, "Offline message")["111"] == 1 })

	// Alice answers with plain text: the one waiting chat is hers then.
	api.say(procAlice, "We'll call you at 3pm.")
	msgs := mail.WaitN(t, 1)
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != "vic@example.com" || !m.TLS || !m.Authed || m.Subject != "Acme replied to your message" {
		t.Errorf("email to %v tls %v auth %v subject %q", m.To, m.TLS, m.Authed, m.Subject)
	}
	if !strings.Contains(m.Text, "We'll call you at 3pm.") || !strings.Contains(m.HTML, "We&#39;ll call you at 3pm.") {
		t.Errorf("the answer is not in the email:\n%s\n%s", m.Text, m.HTML)
	}
	link := regexp.MustCompile(`http://\S+/c/\S+`).FindString(m.Text)
	u, err := url.Parse(link)
	if err != nil || u.Fragment != c.VisitorToken || u.Path != "/c/"+c.ChatID {
		t.Fatalf("continue link %q", link)
	}
	// The link's page opens the chat in the widget; its token reads the answer.
	page, html := get(t, link)
	if page.StatusCode != 200 || !strings.Contains(html, `data-chat="`+c.ChatID+`"`) || !strings.Contains(html, `data-property="acme"`) {
		t.Errorf("continue page: %d %s", page.StatusCode, html)
	}
	if tr := transcriptOf(t, p.base, startedChat{ChatID: c.ChatID, VisitorToken: u.Fragment}); !strings.Contains(tr, "We'll call you at 3pm.") {
		t.Errorf("transcript through the link's token: %s", tr)
	}
	if strings.Contains(p.logs.String(), c.VisitorToken) {
		t.Error("the visitor token reached the server's log")
	}
}
