package widget

import (
	"bytes"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/onduty/onduty/bridge"
)

// multipartBody builds a multipart form: an optional caption and, when name
// is not empty, a file part with the given content type and data.
func multipartBody(t *testing.T, caption, name, ctype string, data []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if caption != "" {
		if err := w.WriteField("text", caption); err != nil {
			t.Fatal(err)
		}
	}
	if name != "" {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
		part, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		part.Write(data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

func TestUploadFile(t *testing.T) {
	e := newEnv(t)
	id, tok := e.startChat(propDemo, "hello")
	closedID, closedTok := e.startChat(propDemo, "bye")
	e.chats.CloseByAgent(bridge.ChatID(closedID), agentAlice)
	path := "/v1/chats/" + id + "/files"
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 100)...)

	tests := []struct {
		name          string
		path          string
		caption, file string
		ctype         string
		data          []byte
		token         string
		wantCode      int
		wantErr       string
		wantMIME      string
	}{
		{"image with a caption", path, "my screen", "screen.png", "image/png", png, tok, 202, "", "image/png"},
		{"no caption, type sniffed", path, "", "shot.png", "application/octet-stream", png, tok, 202, "", "image/png"},
		{"missing token", path, "", "a.txt", "text/plain", []byte("hi"), "", 401, "missing_token", ""},
		{"wrong token", path, "", "a.txt", "text/plain", []byte("hi"), "nope", 403, "forbidden", ""},
		{"unknown chat", "/v1/chats/doesnotexist/files", "", "a.txt", "text/plain", []byte("hi"), tok, 404, "unknown_chat", ""},
		{"closed chat", "/v1/chats/" + closedID + "/files", "", "a.txt", "text/plain", []byte("hi"), closedTok, 409, "chat_closed", ""},
		{"no file part", path, "just text", "", "", nil, tok, 400, "missing_file", ""},
		{"empty file", path, "", "empty.txt", "text/plain", []byte{}, tok, 400, "empty_file", ""},
		{"caption not UTF-8", path, "\xff\xfe", "a.txt", "text/plain", []byte("hi"), tok, 400, "invalid_utf8", ""},
		{"caption too long", path, strings.Repeat("a", 4001), "a.txt", "text/plain", []byte("hi"), tok, 400, "text_too_long", ""},
		{"file over 5 MiB", path, "", "big.bin", "application/zip", make([]byte, MaxUploadBytes+1), tok, 413, "file_too_large", ""},
		{"body far over the route's limit", path, "", "huge.bin", "application/zip", make([]byte, MaxUploadBytes+128<<10), tok, 413, "too_large", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, ctype := multipartBody(t, tc.caption, tc.file, tc.ctype, tc.data)
			headers := []string{"Content-Type", ctype}
			if tc.token != "" {
				headers = append(headers, "Authorization", "Bearer "+tc.token)
			}
			before := len(e.chats.Calls())
			r := e.do("POST", tc.path, body, headers...)
			if r.code != tc.wantCode || r.errCode() != tc.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.code, r.body, tc.wantCode, tc.wantErr)
			}
			calls := e.chats.Calls()[before:]
			if tc.wantCode != 202 {
				if len(calls) != 0 {
					t.Errorf("refused, yet the bridge was called: %v", calls)
				}
				return
			}
			var out postMessageResponse
			r.json(t, &out)
			if _, ok := parseMessageID(out.ID); !ok || out.Attachment == nil || out.Attachment.Name != tc.file || out.Attachment.MIME != tc.wantMIME {
				t.Fatalf("answer %+v (attachment %+v)", out, out.Attachment)
			}
			if len(calls) != 2 || !strings.HasPrefix(calls[0], "PutFile") || !strings.Contains(calls[1], "PostVisitorMessage") {
				t.Errorf("bridge calls %q, want PutFile then PostVisitorMessage", calls)
			}
			// The visitor (and the agents' side) can fetch it back.
			got := e.do("GET", "/v1/chats/"+id+"/files/"+out.Attachment.Key+"?token="+tok, nil)
			if got.code != 200 || !bytes.Equal(got.body, tc.data) || got.header.Get("Content-Type") != tc.wantMIME {
				t.Errorf("file back: %d %s, %d bytes", got.code, got.header.Get("Content-Type"), len(got.body))
			}
		})
	}
}

// TestUploadQuotas: files per chat, per client IP and hour, and per
// property and day; over a quota the upload is refused with 429 before its
// body is read, and nothing reaches the bridge.
func TestUploadQuotas(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = mustPrefixes(t, "0.0.0.0/32")
		c.RateLimits.UploadsPerChat = 2
		c.RateLimits.UploadsPerIPPerHour = 3
		c.RateLimits.UploadsPerPropertyPerDay = 5
	})
	body, ctype := multipartBody(t, "", "a.txt", "text/plain", []byte("hi"))
	upload := func(id, tok, ip string) resp {
		t.Helper()
		return e.do("POST", "/v1/chats/"+id+"/files", body, "Content-Type", ctype, "Authorization", "Bearer "+tok, "X-Forwarded-For", ip)
	}
	type chat struct{ id, tok string }
	newChat := func() chat { id, tok := e.startChat(propDemo, "hi"); return chat{id, tok} }
	want := func(r resp, code int, retry bool) {
		t.Helper()
		if r.code != code || (code == 429 && (r.errCode() != "upload_quota" || (r.header.Get("Retry-After") != "") != retry)) {
			t.Fatalf("%d %v %s, want %d (Retry-After: %v)", r.code, r.header.Get("Retry-After"), r.body, code, retry)
		}
	}

	a := newChat()
	want(upload(a.id, a.tok, "203.0.113.1"), 202, false)
	want(upload(a.id, a.tok, "203.0.113.2"), 202, false)
	before := len(e.chats.Calls())
	want(upload(a.id, a.tok, "203.0.113.3"), 429, false) // the chat's 2
	if calls := e.chats.Calls()[before:]; len(calls) != 0 {
		t.Errorf("refused, yet the bridge was called: %v", calls)
	}

	b, c := newChat(), newChat()
	want(upload(b.id, b.tok, "198.51.100.1"), 202, false)
	want(upload(b.id, b.tok, "198.51.100.1"), 202, false)
	want(upload(c.id, c.tok, "198.51.100.1"), 202, false)
	want(upload(c.id, c.tok, "198.51.100.1"), 429, true) // the IP's 3 this hour
	e.clock.Advance(time.Hour)
	want(upload(c.id, c.tok, "198.51.100.1"), 429, true) // the property's 5 today (refusals are not counted)
	d := newChat()
	want(upload(d.id, d.tok, "192.0.2.1"), 429, true)

	t.Run("refused before the body is read", func(t *testing.T) {
		addr := strings.TrimPrefix(e.serve(), "http://")
		// The head and the first 9 KiB (fasthttp reads a little over 8 KiB
		// ahead) of a 5 MiB upload: the answer comes without the rest.
		head := announce(t, addr, "POST", "/v1/chats/"+d.id+"/files", "multipart/form-data; boundary=xyz", MaxUploadBytes, 9<<10,
			"Authorization", "Bearer "+d.tok)
		defer head.Close()
		if r := readResp(t, head); r.code != 429 || r.errCode() != "upload_quota" {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
	e.clock.Advance(24 * time.Hour)
	want(upload(d.id, d.tok, "192.0.2.1"), 202, false)
}
