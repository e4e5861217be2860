package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	slackapi "github.com/slack-go/slack"

	"github.com/onduty/onduty/bridge"
)

// maxFileBytes caps a file an agent sends from Slack (the bridge has its own cap).
const maxFileBytes = 10 << 20

// fetchFiles downloads the files of an agent's message and stores them for
// chat. It returns what was stored and a note for the agent about the rest.
func (a *Adapter) fetchFiles(ctx context.Context, fs bridge.FileStore, chat bridge.ChatID, files []slackapi.File) ([]*bridge.Attachment, string) {
	if chat == "" {
		return nil, "To send a file to a visitor, post it in the chat's thread."
	}
	var out []*bridge.Attachment
	var failed []string
	for _, f := range files {
		att, err := a.fetchFile(ctx, fs, chat, f)
		if err != nil {
			a.log.Warn("slack: agent file", "chat_id", chat, "file", f.ID, "err", err)
			failed = append(failed, f.Name)
			continue
		}
		out = append(out, &att)
	}
	if len(failed) > 0 {
		return out, fmt.Sprintf("Couldn't pass on %v (files up to %d MiB).", failed, maxFileBytes>>20)
	}
	return out, ""
}

func (a *Adapter) fetchFile(ctx context.Context, fs bridge.FileStore, chat bridge.ChatID, f slackapi.File) (bridge.Attachment, error) {
	if f.Size > maxFileBytes {
		return bridge.Attachment{}, fmt.Errorf("slack: file of %d bytes is too large", f.Size)
	}
	src := f.URLPrivateDownload
	if src == "" {
		src = f.URLPrivate
	}
	buf := &cappedBuffer{max: maxFileBytes}
	if err := a.api.GetFileContext(ctx, src, buf); err != nil {
		return bridge.Attachment{}, fmt.Errorf("slack: download file: %w", err)
	}
	mime := f.Mimetype
	if mime == "" {
		mime = "application/octet-stream"
	}
	name := f.Name
	if name == "" {
		name = f.Title
	}
	att, err := fs.PutFile(ctx, chat, name, mime, buf.Bytes())
	if err != nil {
		return bridge.Attachment{}, fmt.Errorf("slack: store file: %w", err)
	}
	return att, nil
}

var errTooLarge = errors.New("file too large")

// cappedBuffer refuses to grow past max bytes.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// uploadFile shares a chat's file (a visitor's, or an agent's from another
// app) in the thread, with files.getUploadURLExternal, the upload, then
// files.completeUploadExternal. A file that is gone (expired) is only named
// in the message before it, as it was already.
func (a *Adapter) uploadFile(ctx context.Context, chat bridge.ChatID, att bridge.Attachment, channel, threadTS string) error {
	h := a.handler()
	if h == nil {
		return errors.New("slack: not running: the file store comes with Run")
	}
	meta, data, err := h.File(ctx, chat, att.Key)
	switch {
	case errors.Is(err, bridge.ErrUnavailable):
		return err // storage is down: the outbox tries again
	case err != nil:
		a.log.Warn("slack: file not shared", "chat_id", chat, "file", att.Key, "err", err)
		return nil
	case len(data) == 0:
		return nil // Slack refuses empty files; the message names it
	}
	name := meta.Name
	if name == "" {
		name = "file"
	}
	if err := a.pace.wait(ctx, channel); err != nil {
		return err
	}
	err = bridge.Call(ctx, func(ctx context.Context) error {
		_, err := a.api.UploadFileContext(ctx, slackapi.UploadFileParameters{
			Reader: bytes.NewReader(data), FileSize: len(data), Filename: name, Title: name,
			Channel: channel, ThreadTimestamp: threadTS,
		})
		return err
	})
	if err != nil {
		a.pace.penalize(channel, err)
		return fmt.Errorf("slack: upload file: %w", err)
	}
	return nil
}
