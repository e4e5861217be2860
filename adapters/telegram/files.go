package telegram

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
)

// maxFileBytes is what the Bot API lets a bot download (getFile: 20 MB).
const maxFileBytes = 20 << 20

// fetchAttachment downloads the photo or document of m from Telegram and
// stores it through the host.
func (a *Adapter) fetchAttachment(ctx context.Context, h bridge.Host, chat bridge.ChatID, m *models.Message) (*bridge.Attachment, error) {
	var fileID, name, mimeType string
	var size int64
	switch {
	case m.Document != nil:
		fileID, name, mimeType, size = m.Document.FileID, m.Document.FileName, m.Document.MimeType, m.Document.FileSize
	case len(m.Photo) > 0:
		p := m.Photo[len(m.Photo)-1] // the largest size comes last
		fileID, name, mimeType, size = p.FileID, "photo.jpg", "image/jpeg", int64(p.FileSize)
	default:
		return nil, errors.New("no file in the message")
	}
	if size > maxFileBytes {
		return nil, fmt.Errorf("the file is larger than %d MB", maxFileBytes>>20)
	}
	f, err := a.bot.GetFile(ctx, &bot.GetFileParams{FileID: fileID})
	if err != nil {
		if err := classify("get file", err); !isPermanent(err) {
			return nil, &transientError{err: err}
		}
		return nil, errors.New("Telegram would not hand out the file")
	}
	data, err := a.download(ctx, f.FilePath)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = path.Base(f.FilePath)
	}
	if mimeType == "" {
		mimeType = mime.TypeByExtension(path.Ext(name))
		if mimeType == "" {
			mimeType = "application/octet-stream"
		}
	}
	att, err := h.PutFile(ctx, chat, name, mimeType, data)
	if err != nil {
		if isTransient(err) {
			return nil, err
		}
		return nil, fmt.Errorf("the file was not accepted: %w", err)
	}
	return &att, nil
}

func isPermanent(err error) bool {
	var p *bridge.PermanentError
	return errors.As(err, &p)
}

// download reads {APIURL}/file/bot<token>/<path>.
func (a *Adapter) download(ctx context.Context, filePath string) ([]byte, error) {
	if filePath == "" || strings.Contains(filePath, "..") {
		return nil, errors.New("Telegram gave no usable file path")
	}
	u := a.cfg.APIURL + "/file/bot" + a.cfg.Token + "/" + strings.TrimPrefix(filePath, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errf("download", a.redact(err))
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, transient("download", a.redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("download: HTTP %d", resp.StatusCode)
		if resp.StatusCode >= 500 {
			return nil, &transientError{err: err}
		}
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFileBytes+1))
	if err != nil {
		return nil, transient("download", a.redact(err))
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("the file is larger than %d MB", maxFileBytes>>20)
	}
	return data, nil
}

// visitorFile reads a visitor's file through the host; nil before Run
// was given one.
func (a *Adapter) visitorFile(ctx context.Context, chat bridge.ChatID, att bridge.Attachment) (*document, error) {
	box := a.handler.Load()
	if box == nil {
		return nil, nil
	}
	meta, data, err := box.h.File(ctx, chat, att.Key)
	if err != nil {
		if errors.Is(err, bridge.ErrUnknownChat) {
			return nil, &bridge.PermanentError{Err: errf("visitor file", err)}
		}
		return nil, errf("visitor file", err)
	}
	name := meta.Name
	if name == "" {
		name = att.Name
	}
	if name == "" {
		name = "file"
	}
	return &document{name: name, data: data}, nil
}
