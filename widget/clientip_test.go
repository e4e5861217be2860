package widget

import (
	"fmt"
	"net/netip"
	"testing"
)

func mustPrefixes(t testing.TB, cidrs ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestClientIP: behind trusted proxies the client IP is the rightmost
// X-Forwarded-For entry that is not a trusted proxy; an entry there that is
// not an IP refuses the request; without trusted proxies the header is not
// read. (app.Test's peer is 0.0.0.0.)
func TestClientIP(t *testing.T) {
	trusted := func(c *Config) { c.TrustedProxies = mustPrefixes(t, "0.0.0.0/32", "10.0.0.0/8", "2001:db8::/32") }
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		xff     string
		want    string // "" : refused with 400 invalid_client_ip
		wantErr bool
	}{
		{"no proxies: the header is ignored", nil, "203.0.113.7", "0.0.0.0", false},
		{"no header", trusted, "", "0.0.0.0", false},
		{"one entry", trusted, "203.0.113.7", "203.0.113.7", false},
		{"client-written entries left of the proxy's are ignored", trusted, "198.51.100.1, 203.0.113.7", "203.0.113.7", false},
		{"trusted proxies on the right are skipped", trusted, "203.0.113.7, 10.1.2.3,10.0.0.9", "203.0.113.7", false},
		{"garbage left of the client is ignored", trusted, "not-an-ip, 203.0.113.7", "203.0.113.7", false},
		{"not an IP", trusted, "not-an-ip", "", true},
		{"not an IP after the proxies", trusted, "203.0.113.7, not-an-ip, 10.0.0.1", "", true},
		{"a port is not an IP", trusted, "203.0.113.7:4444", "", true},
		{"IPv6", trusted, "2001:db8::1, 2a00:1450::1", "2a00:1450::1", false},
		{"IPv4-mapped IPv6 is unmapped", trusted, "::ffff:203.0.113.9", "203.0.113.9", false},
		{"all trusted: the leftmost", trusted, "10.0.0.7, 10.0.0.8", "10.0.0.7", false},
		{"other header", func(c *Config) { trusted(c); c.ProxyHeader = "X-Real-IP" }, "203.0.113.7", "0.0.0.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*Config)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			e := newEnv(t, mods...)
			var h []string
			if tc.xff != "" {
				h = []string{"X-Forwarded-For", tc.xff}
			}
			r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}, h...)
			if tc.wantErr {
				if r.code != 400 || r.errCode() != "invalid_client_ip" {
					t.Errorf("%d %s, want 400 invalid_client_ip", r.code, r.body)
				}
				if n := len(e.chats.ChatIDs()); n != 0 {
					t.Errorf("%d chats started", n)
				}
				return
			}
			if r.code != 201 {
				t.Fatalf("%d %s", r.code, r.body)
			}
			ids := e.chats.ChatIDs()
			c, _ := e.chats.Chat(ids[0])
			if c.Visitor.IP != tc.want {
				t.Errorf("client IP %q, want %q", c.Visitor.IP, tc.want)
			}
		})
	}
}

// TestForwardedForCannotBypassRateLimits: the attack of varying the
// leftmost X-Forwarded-For entry behind a proxy counts against one client.
func TestForwardedForCannotBypassRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = mustPrefixes(t, "0.0.0.0/32")
		c.RateLimits.ChatsPerMinute = 20
	})
	created := 0
	for i := range 30 {
		r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d, 203.0.113.7", i))
		switch r.code {
		case 201:
			created++
		case 429:
		default:
			t.Fatalf("%d %s", r.code, r.body)
		}
	}
	if created != 20 {
		t.Errorf("%d chats created, want 20", created)
	}
}

func TestCapKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"2001:db8:1:2::ffff":   "2001:db8:1:2::",
		"::1":                  "::",
	} {
		if got := capKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("capKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestIPv6SlashSixtyFourCountsAsOne: addresses of one IPv6 /64 share their
// rate limit (behind a trusted proxy, as with a real client).
func TestIPv6SlashSixtyFourCountsAsOne(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = mustPrefixes(t, "0.0.0.0/32")
		c.RateLimits.ChatsPerMinute = 3
	})
	codes := ""
	for i := range 5 {
		r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}, "X-Forwarded-For", fmt.Sprintf("2001:db8:0:1::%x", i+1))
		codes += fmt.Sprint(r.code, " ")
	}
	if r := e.do("POST", "/v1/properties/demo/chats", map[string]string{"message": "hi"}, "X-Forwarded-For", "2001:db8:0:2::1"); r.code != 201 {
		t.Errorf("another /64: %d", r.code)
	}
	if codes != "201 201 201 429 429 " {
		t.Errorf("codes %s, want 201 ×3 then 429", codes)
	}
}
