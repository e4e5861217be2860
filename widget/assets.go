package widget

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed assets/widget.js
var widgetSource []byte

// widgetJS is widget.js as served: the source without its comment lines and
// indentation, which readers need and browsers do not.
var widgetJS = compactJS(widgetSource)

//go:embed assets/index.html
var demoHTML []byte

//go:embed assets/admin.html
var adminPageHTML []byte

//go:embed assets/admin.js
var adminPageJS []byte

// assets are the embedded files the server serves as they are: widget.js
// (comment lines dropped), the demo page, and the admin board's page and
// script (served by the admin API, which decides whether they exist).
type assets struct {
	js, demo           asset
	adminHTML, adminJS asset
}

func newAssets() *assets {
	return &assets{
		js:        newAsset(widgetJS, "application/javascript; charset=utf-8", "public, max-age=300"),
		demo:      newAsset(demoHTML, "text/html; charset=utf-8", "no-cache"),
		adminHTML: newAsset(adminPageHTML, "text/html; charset=utf-8", "no-cache"),
		adminJS:   newAsset(adminPageJS, "application/javascript; charset=utf-8", "no-cache"),
	}
}

// widgetScript answers GET /widget.js.
func (a *assets) widgetScript(c *fiber.Ctx) error { return a.js.serve(c) }

// demoPage answers GET /: a page with the widget on it.
func (a *assets) demoPage(c *fiber.Ctx) error { return a.demo.serve(c) }

// asset is an embedded file served with an ETag, gzipped when the client
// accepts it (compressed once at start).
type asset struct {
	body, gz     []byte
	etag         string
	contentType  string
	cacheControl string
}

func newAsset(body []byte, contentType, cacheControl string) asset {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(body)
	_ = zw.Close()
	h := fnv.New64a()
	h.Write(body)
	return asset{body: body, gz: buf.Bytes(), etag: fmt.Sprintf(`"%x"`, h.Sum64()), contentType: contentType, cacheControl: cacheControl}
}

func (a asset) serve(c *fiber.Ctx) error {
	c.Set(fiber.HeaderETag, a.etag)
	c.Set(fiber.HeaderCacheControl, a.cacheControl)
	c.Vary(fiber.HeaderAcceptEncoding)
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), a.etag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	c.Set(fiber.HeaderContentType, a.contentType)
	if strings.Contains(c.Get(fiber.HeaderAcceptEncoding), "gzip") {
		c.Set(fiber.HeaderContentEncoding, "gzip")
		return c.Send(a.gz)
	}
	return c.Send(a.body)
}

// compactJS drops the lines that are only a // comment, blank lines and
// leading indentation. It relies on widget.js's style: no string or template
// literal spans lines, so no such line is inside one.
func compactJS(src []byte) []byte {
	out := make([]byte, 0, len(src))
	for line := range bytes.SplitSeq(src, []byte("\n")) {
		l := bytes.TrimLeft(line, " \t")
		if len(l) == 0 || bytes.HasPrefix(l, []byte("//")) {
			continue
		}
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}
