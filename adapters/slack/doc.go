// Package slack is the Slack surface of onduty: agents take and answer
// visitor chats from a Slack channel (one thread per chat) or their DMs with
// the bot, and use the /onduty slash command and buttons.
//
// The adapter only translates. Slack events from configured agents become
// bridge.Actions (every one of them is activity for presence); everything
// else — routing, who owns a chat, what a command means, reply wording —
// lives in the bridge. Users who are not configured agents are told once a
// day, and nothing reaches the bridge.
//
// Where chats show: a property with a slack_channel gets one root message
// per chat (visitor details, first message, Accept/Monitor buttons), edited
// when the chat is taken, withdrawn or closed, with the conversation in its
// thread. A property without one reaches each agent in a DM with the bot the
// same way. A message with a file (a visitor's, or an agent's from another
// app) names it in the thread and shares the file there too, through
// Slack's external upload (files.getUploadURLExternal, the upload,
// files.completeUploadExternal; scope files:write); an answer an agent sent
// from a DM is copied into the thread for the team. Notices and "Still on
// duty?" prompts go to the agent's DM. Thread
// replies from agents become ActMessage with the thread as ReplyTo (the
// bridge finds its chat; files are stored through the Host's PutFile for
// the chat Host.ChatOf names); a DM outside a thread is ActMessage for the
// agent's current chat; talk in a channel thread that is no chat's, and
// anything else an agent writes where the bot can see it, is activity. Slash commands (/onduty SUB ARGS)
// become ActCommand and are answered ephemerally: in the response itself when
// the bridge answers within 2.5 s, else through the response_url.
//
// Connections: Socket Mode (default; every instance may connect, Slack gives
// each envelope to one connection) or the Events API over HTTP
// (HTTPHandlers: /slack/events, /slack/commands, /slack/interactions), with
// the signing secret checked on the raw body and a 5-minute replay window.
// Events reach the bridge with DedupKey "slack:<event_id>" (buttons and
// slash commands "slack:trigger:<trigger_id>"): the bridge handles each
// once, whichever instance Slack sends it to; a repeat of an event being
// handled elsewhere right now (bridge.ErrInProgress) is not acknowledged,
// so that Slack sends it again should that instance die.
//
// Concurrency: the work is handed to one of a fixed set of workers chosen
// by the Slack user, so one agent's actions reach the bridge in order; Slack
// is answered once the work is done, or after 2.5 s (handleWait), so an
// instance that dies first leaves the event to be sent again. Deliver is safe for concurrent use; it paces posts to
// about one a second per channel and maps Slack's errors to
// bridge.RetryAfterError (429) and bridge.PermanentError (the request itself
// is wrong). The adapter keeps no chat state: Deliver returns what it posted
// (the root as bridge.RefThread, thread messages as bridge.RefMessage) and
// the bridge keeps it, handing the root back (Delivery.Thread) to edit and
// to post under, and what a failed attempt posted (Delivery.Done) to skip.
// Its own keys (keys.go) concern Slack alone; MigrateRefs moves an earlier
// version's chat keys into the bridge at start.
package slack
