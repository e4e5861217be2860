package widget

import (
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/onduty/onduty/bridge"
)

// blockResponse is one entry of GET /v1/admin/properties/{p}/blocks.
type blockResponse struct {
	ID     string        `json:"id"`
	ChatID bridge.ChatID `json:"chat_id"`
	// IP is the blocked address (an IPv6 address as its /64); "" if the
	// chat had none.
	IP string `json:"ip"`
	// VisitorID is the widget's id of the visitor's browser, if it sent one.
	VisitorID string    `json:"visitor_id,omitempty"`
	Until     time.Time `json:"until"`
	By        string    `json:"by,omitempty"`
}

var errUnknownBlock = newErr(http.StatusNotFound, "unknown_block", "no such block in force")

// adminBlocks answers GET /v1/admin/properties/{p}/blocks: the property's
// blocks in force, soonest to end first.
func (a *adminAPI) adminBlocks(c *fiber.Ctx) error {
	p, err := a.authorizedProperty(c)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	blocks, err := a.chats.Blocks(ctx, p)
	if err != nil {
		return a.bridgeErr("admin blocks", err)
	}
	out := make([]blockResponse, 0, len(blocks))
	for _, b := range blocks {
		out = append(out, blockResponse{ID: b.ID, ChatID: b.Chat, IP: b.IP, VisitorID: b.Visitor, Until: b.Until.UTC(), By: string(b.By)})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// adminUnblock answers DELETE /v1/admin/properties/{p}/blocks/{id}: 204
// once lifted, 404 unknown_block if there is no such block in force.
func (a *adminAPI) adminUnblock(c *fiber.Ctx) error {
	p, err := a.authorizedProperty(c)
	if err != nil {
		return err
	}
	id := strings.Clone(c.Params("id"))
	ctx, cancel := opCtx(c)
	defer cancel()
	ok, err := a.chats.Unblock(ctx, p, id)
	if err != nil {
		return a.bridgeErr("admin unblock", err)
	}
	if !ok {
		return errUnknownBlock
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.SendStatus(http.StatusNoContent)
}
