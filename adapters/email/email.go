// Package email sends the bridge's emails to visitors over SMTP (SPEC §9)
// with github.com/wneessen/go-mail. It plugs into the outbox like a chat
// platform: the bridge queues KindEmail deliveries for bridge.EmailTarget,
// the outbox hands them to Deliver one chat at a time, retries connection
// errors and 4xx answers with backoff, and records a 5xx answer on the chat
// (Deliver returns *bridge.PermanentError) without retrying.
//
// Deliver dials the server for each email: emails are rare next to chat
// messages, and a connection held open would only time out in between.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/onduty/onduty/bridge"
	"github.com/onduty/onduty/internal/metrics"
	"github.com/onduty/onduty/presence"
)

// Config configures the Sender.
type Config struct {
	// SMTPURL: smtp://[user:pass@]host[:port] sends with STARTTLS when the
	// server offers it (port 25 by default; 587 with credentials),
	// smtps://[user:pass@]host[:port] over TLS (port 465 by default). With
	// credentials, AUTH uses the best mechanism the server offers, and
	// never sends them before TLS unless the server is on loopback.
	SMTPURL string
	// From is the sender, "Acme Support <support@acme.example>".
	From string
	// HELO is the name the client greets with. Zero means "localhost".
	HELO string
	// Timeout bounds connecting and each SMTP command. Zero means 15s.
	Timeout time.Duration
	// TLSConfig overrides the TLS settings (tests trust their own
	// certificate). Nil means the system roots and the URL's host name.
	TLSConfig *tls.Config
}

// Sender is the outbox target that emails visitors.
type Sender struct {
	opts []gomail.Option
	host string
	from *mail.Address
	log  *slog.Logger
}

var _ bridge.Adapter = (*Sender)(nil)

// New checks the configuration and returns a Sender.
func New(cfg Config, log *slog.Logger) (*Sender, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.SMTPURL)
	if err != nil || u.Hostname() == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") {
		return nil, errors.New("email: smtp_url: want smtp://[user:pass@]host[:port] or smtps://…")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil || strings.ContainsAny(cfg.From, "\r\n") {
		return nil, fmt.Errorf("email: from: %q is not an address like \"Acme Support <support@acme.example>\"", cfg.From)
	}
	if cfg.HELO == "" {
		cfg.HELO = "localhost"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	host := u.Hostname()
	user := u.User.Username()
	pass, _ := u.User.Password()
	port := 25
	if user != "" {
		port = 587
	}
	opts := []gomail.Option{gomail.WithTimeout(cfg.Timeout), gomail.WithHELO(cfg.HELO)}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	opts = append(opts, gomail.WithTLSConfig(tc))
	if u.Scheme == "smtps" {
		port = 465
		opts = append(opts, gomail.WithSSL())
	} else {
		// STARTTLS when the server offers it; a local catcher offers none.
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("email: smtp_url: bad port %q", p)
		}
		port = n
	}
	opts = append(opts, gomail.WithPort(port))
	if user != "" {
		// AUTODISCOVER picks the strongest mechanism the server offers;
		// go-mail's PLAIN and LOGIN refuse to send credentials unencrypted
		// except to localhost.
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(user), gomail.WithPassword(pass))
	}
	// Check the options once now, so that a bad one fails at start.
	if _, err := gomail.NewClient(host, opts...); err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	log.Info("email on", "smtp_host", net.JoinHostPort(host, strconv.Itoa(port)), "tls", u.Scheme == "smtps", "auth", user != "")
	return &Sender{opts: opts, host: host, from: from, log: log.With("adapter", bridge.EmailTarget)}, nil
}

// Name is bridge.EmailTarget.
func (s *Sender) Name() string { return bridge.EmailTarget }

// Reaches is false: emails go to visitors, never to agents.
func (s *Sender) Reaches(presence.AgentID) bool { return false }

// Shared is false: there is no shared place.
func (s *Sender) Shared(presence.PropertyID) bool { return false }

// Run has nothing to receive; it waits for ctx.
func (s *Sender) Run(ctx context.Context, _ bridge.Host) error {
	<-ctx.Done()
	return nil
}

// Deliver sends one email. A 5xx answer is a *bridge.PermanentError;
// connection errors and 4xx answers are returned as they are, for the
// outbox to retry.
func (s *Sender) Deliver(ctx context.Context, d bridge.Delivery) ([]bridge.RemoteRef, error) {
	return nil, s.deliverOne(ctx, d)
}

func (s *Sender) deliverOne(ctx context.Context, d bridge.Delivery) error {
	if d.Kind != bridge.KindEmail || d.Email == nil {
		return &bridge.PermanentError{Err: fmt.Errorf("email: delivery %s of kind %s is not an email", d.ID, d.Kind)}
	}
	msg, err := compose(s.from, d)
	if err != nil {
		metrics.Emails.WithLabelValues("failed").Inc()
		return &bridge.PermanentError{Err: err}
	}
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return fmt.Errorf("email: client: %w", err)
	}
	err = c.DialAndSendWithContext(ctx, msg)
	if err == nil {
		metrics.Emails.WithLabelValues("sent").Inc()
		s.log.Info("email sent", "chat_id", d.Chat.ID, "kind", d.Email.Kind, "messages", len(d.Email.Messages))
		return nil
	}
	if code := smtpCode(err); code >= 500 && code < 600 {
		metrics.Emails.WithLabelValues("failed").Inc()
		return &bridge.PermanentError{Err: fmt.Errorf("email: the SMTP server refused it: %w", err)}
	}
	metrics.Emails.WithLabelValues("retried").Inc()
	return fmt.Errorf("email: send: %w", err)
}

// smtpCode is the SMTP reply code behind err (0 if the server gave none:
// a connection error, a timeout).
func smtpCode(err error) int {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return 0
}
