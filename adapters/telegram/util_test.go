package telegram

import (
	"encoding/json"
	"testing"

	"github.com/go-telegram/bot/models"
)

// decodeUpdate turns a builder's map into the library's Update.
func decodeUpdate(t testing.TB, u map[string]any, id int64) *models.Update {
	t.Helper()
	u["update_id"] = id
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	var out models.Update
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
