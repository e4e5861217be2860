package telegram

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/onduty/onduty/bridge"
)

// chatWorkers is how many updates are handled at once, each worker taking
// the Telegram chats that hash to it: one chat's updates in order, a slow
// answer to one agent holding only the chats of its worker.
const chatWorkers = 64

// maxPending bounds the updates fetched but not yet handled: getUpdates
// returns at most 100 updates from the offset, and the offset stays at the
// oldest update still being handled.
const maxPending = 100

// busyRepoll is how long the poll loop waits for the updates it dispatched
// before it asks Telegram for newer ones anyway: while one is slow, the
// others' agents are heard at most this late.
const busyRepoll = 250 * time.Millisecond

// updateChat is the Telegram chat an update belongs to, for ordering: the
// message's chat, or the user who pressed a button.
func updateChat(u *models.Update) int64 {
	switch {
	case u.Message != nil:
		return u.Message.Chat.ID
	case u.CallbackQuery != nil:
		return u.CallbackQuery.From.ID
	}
	return 0
}

// chatIndex maps a chat to one of n workers (or locks).
func chatIndex(chat int64, n int) int {
	return bridge.Shard(strconv.FormatInt(chat, 10), n)
}

// chatQueues runs functions on workers chosen by chat: those of one chat
// one after another in the order given, those of different chats at once.
type chatQueues struct {
	queues []chan func()
	wg     sync.WaitGroup
}

func newChatQueues(workers, depth int) *chatQueues {
	q := &chatQueues{queues: make([]chan func(), workers)}
	for i := range q.queues {
		ch := make(chan func(), depth)
		q.queues[i] = ch
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			for f := range ch {
				f()
			}
		}()
	}
	return q
}

// run queues f behind the chat's earlier functions. It does not block while
// fewer than depth functions wait on the worker.
func (q *chatQueues) run(chat int64, f func()) {
	q.queues[chatIndex(chat, len(q.queues))] <- f
}

// close waits for every queued function to return; run may not be called after.
func (q *chatQueues) close() {
	for _, ch := range q.queues {
		close(ch)
	}
	q.wg.Wait()
}

// window tracks the updates fetched by the poll loop that are still being
// handled, so that the offset confirmed to Telegram never passes one of
// them: an update being handled when the process dies comes again.
type window struct {
	mu      sync.Mutex
	next    int64              // one past the newest update dispatched
	busy    map[int64]struct{} // dispatched, not handled yet
	settled chan struct{}      // signalled when an update is handled
}

func newWindow() *window {
	return &window{busy: map[int64]struct{}{}, settled: make(chan struct{}, 1)}
}

// take reports whether the update is new (not dispatched before), and marks
// it busy if so. Telegram hands busy updates again until they are confirmed.
func (w *window) take(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id < w.next {
		return false
	}
	w.next = id + 1
	w.busy[id] = struct{}{}
	return true
}

// done marks the update handled (or given up).
func (w *window) done(id int64) {
	w.mu.Lock()
	delete(w.busy, id)
	w.mu.Unlock()
	select {
	case w.settled <- struct{}{}:
	default:
	}
}

// offset is what to ask getUpdates from: the oldest busy update, or past
// every update dispatched. busy tells whether some update is still handled.
func (w *window) offset() (offset int64, busy bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	offset = w.next
	for id := range w.busy {
		offset = min(offset, id)
	}
	return offset, len(w.busy) > 0
}

// settle waits until no update is busy, for at most d.
func (w *window) settle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		if _, busy := w.offset(); !busy {
			return
		}
		select {
		case <-w.settled:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
