package email

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"unicode"

	gomail "github.com/wneessen/go-mail"

	"github.com/onduty/onduty/bridge"
)

// line is one quoted message as the templates show it.
type line struct {
	Who, At, Text string
}

type page struct {
	Greeting string
	Intro    string
	Lines    []line
	Continue string
	Property string
}

// compose builds the email of a delivery: multipart/alternative with plain
// text and HTML. Every typed field is plain text: the HTML template escapes
// it, and whatever goes into a header is one line without control
// characters (go-mail encodes the rest).
func compose(from *mail.Address, d bridge.Delivery) (*gomail.Msg, error) {
	e := d.Email
	to, err := mail.ParseAddress(e.To)
	if err != nil || hasControl(e.To) || to.Address != strings.TrimSpace(e.To) {
		return nil, fmt.Errorf("email: the visitor's address %q is not deliverable", e.To)
	}
	prop := oneLine(e.Property)
	p := page{Property: prop, Continue: e.ContinueURL, Greeting: "Hello,"}
	if n := oneLine(e.ToName); n != "" {
		p.Greeting = "Hello " + n + ","
	}
	var subject string
	switch e.Kind {
	case bridge.EmailTranscript:
		subject = "Your conversation with " + prop
		p.Intro = "Here is your conversation with " + prop + ", as you asked."
	default:
		subject = prop + " replied to your message"
		p.Intro = prop + " answered you while you were away:"
		if len(e.Messages) > 1 {
			p.Intro = prop + " answered you while you were away (" + fmt.Sprint(len(e.Messages)) + " messages):"
		}
	}
	for _, m := range e.Messages {
		p.Lines = append(p.Lines, line{Who: who(m, prop), At: m.At.UTC().Format("2 Jan 2006 15:04 UTC"), Text: body(m)})
	}
	var text, html bytes.Buffer
	if err := textTmpl.Execute(&text, p); err != nil {
		return nil, fmt.Errorf("email: text body: %w", err)
	}
	if err := htmlTmpl.Execute(&html, p); err != nil {
		return nil, fmt.Errorf("email: html body: %w", err)
	}

	msg := gomail.NewMsg()
	if err := msg.FromFormat(oneLine(from.Name), from.Address); err != nil {
		return nil, fmt.Errorf("email: from: %w", err)
	}
	if err := msg.AddToFormat(oneLine(e.ToName), to.Address); err != nil {
		return nil, fmt.Errorf("email: the visitor's address %q is not deliverable: %w", e.To, err)
	}
	msg.Subject(subject)
	msg.SetDate()
	msg.SetMessageIDWithValue(fmt.Sprintf("%s.%s@onduty", d.Chat.ID, d.ID))
	// RFC 3834: no auto-replies (vacation notices) back to us.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, text.String())
	msg.AddAlternativeString(gomail.TypeTextHTML, html.String())
	return msg, nil
}

// who names a message's writer for the visitor.
func who(m bridge.Message, prop string) string {
	switch {
	case m.From == bridge.FromVisitor:
		return "You"
	case m.From == bridge.FromAgent && m.Name != "":
		return m.Name
	}
	return prop
}

func body(m bridge.Message) string {
	t := m.Text
	if m.Attachment != nil {
		if t != "" {
			t += "\n"
		}
		t += "[file: " + m.Attachment.Name + "]"
	}
	return t
}

// oneLine makes s safe for a header: control characters (CR, LF…) and runs
// of white space become one space, and the result is trimmed.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)), " ")
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

var textTmpl = texttemplate.Must(texttemplate.New("text").Parse(`{{.Greeting}}

{{.Intro}}
{{range .Lines}}
{{.Who}} ({{.At}}):
{{.Text}}
{{end}}{{if .Continue}}
Continue the conversation: {{.Continue}}
{{end}}
-- 
{{.Property}}
`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Property}}</title></head>
<body style="font-family:system-ui,sans-serif;line-height:1.5;color:#222">
<p>{{.Greeting}}</p>
<p>{{.Intro}}</p>
{{range .Lines}}<div style="margin:0 0 1em">
<div style="color:#666;font-size:90%"><strong>{{.Who}}</strong> · {{.At}}</div>
<blockquote style="margin:.25em 0 0;padding-left:.75em;border-left:3px solid #ccc;white-space:pre-wrap">{{.Text}}</blockquote>
</div>
{{end}}{{if .Continue}}<p><a href="{{.Continue}}">Continue the conversation</a></p>
{{end}}<p style="color:#666">{{.Property}}</p>
</body></html>
`))
