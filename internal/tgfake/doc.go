// Package tgfake is a fake Telegram Bot API for tests and for the load test:
// an httptest server that the real go-telegram/bot client (and the
// adapter's own getUpdates) talk to over loopback.
//
// It speaks the wire format: /bot<token>/<method> and
// /file/bot<token>/<path>, parameters as multipart/form-data,
// application/x-www-form-urlencoded, JSON or the query string, answers
// {"ok":true,"result":…} or {"ok":false,"error_code":…,"description":…}
// with parameters.retry_after on a 429. getUpdates confirms updates by
// offset and long-polls (woken at once when an update is queued).
// sendMessage, editMessageText and sendDocument check text, HTML entities and
// inline keyboards as Telegram does, so a message Telegram would refuse is
// refused here too.
//
// A path may start with /NAME/ (…/NAME/bot<token>/…) or a request carry an
// X-Instance header: the call is recorded with that instance, so a test
// running several onduty instances against one fake sees which one called.
//
// Every call is recorded under a mutex (Calls, CallsWhere, Counts) unless
// Options.CountOnly. Failures are injected per method (FailNext, FailAfter,
// Refuse) and a token can be revoked (Revoke). The package does not import
// "testing": the load test, which is production code, runs it too; the
// fake's own problems (a body it cannot parse) go to Options.Report, which
// a *testing.T satisfies. All methods are safe for concurrent use.
package tgfake
