package matrixclient

import (
	"time"

	"maunium.net/go/mautrix/id"
)

// Focus names an MSC3898 focus: a Matrix user and one of its devices.
type Focus struct {
	UserID   id.UserID
	DeviceID id.DeviceID
}

// focusJSON is a focus in a per-device membership's foci_preferred and
// focus_active.
type focusJSON struct {
	Type     string      `json:"type"`
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
}

// memberContent is the per-device call membership
// (org.matrix.msc3401.call.member), as matrix-js-sdk writes it.
type memberContent struct {
	Application   string      `json:"application"`
	CallID        string      `json:"call_id"`
	Scope         string      `json:"scope"`
	DeviceID      id.DeviceID `json:"device_id"`
	Expires       int64       `json:"expires"`              // ms after the event
	CreatedTS     int64       `json:"created_ts,omitempty"` // ms since the epoch
	FocusActive   focusJSON   `json:"focus_active"`
	FociPreferred []focusJSON `json:"foci_preferred"`
}

// legacyFocus is a focus in the MSC3401 format, as MSC3898 writes it.
type legacyFocus struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
}

type legacyFeed struct {
	Purpose Purpose `json:"purpose"`
}

type legacyDevice struct {
	DeviceID      id.DeviceID   `json:"device_id"`
	SessionID     string        `json:"session_id"`
	ExpiresTS     int64         `json:"expires_ts"`
	Feeds         []legacyFeed  `json:"feeds"`
	FociActive    []legacyFocus `json:"m.foci.active"`
	FociPreferred []legacyFocus `json:"m.foci.preferred"`
}

type legacyCall struct {
	CallID  string         `json:"m.call_id"`
	Devices []legacyDevice `json:"m.devices"`
}

// legacyMemberContent is the MSC3401 m.call.member content: all of one
// user's calls and devices. This client writes only its own device.
type legacyMemberContent struct {
	Calls []legacyCall `json:"m.calls"`
}

// memberStateKey is the per-device membership's state key.
func memberStateKey(user id.UserID, device id.DeviceID) string {
	return "_" + string(user) + "_" + string(device) + "_m.call"
}

func newMemberContent(confID string, device id.DeviceID, f Focus, expires time.Duration, now time.Time) memberContent {
	fj := focusJSON{Type: FocusType, UserID: f.UserID, DeviceID: f.DeviceID}
	return memberContent{
		Application:   "m.call",
		CallID:        confID,
		Scope:         "m.room",
		DeviceID:      device,
		Expires:       expires.Milliseconds(),
		CreatedTS:     now.UnixMilli(),
		FocusActive:   fj,
		FociPreferred: []focusJSON{fj},
	}
}

func newLegacyMemberContent(confID string, device id.DeviceID, session string, f Focus, expires time.Duration, now time.Time) legacyMemberContent {
	lf := []legacyFocus{{UserID: f.UserID, DeviceID: f.DeviceID}}
	return legacyMemberContent{Calls: []legacyCall{{
		CallID: confID,
		Devices: []legacyDevice{{
			DeviceID:      device,
			SessionID:     session,
			ExpiresTS:     now.Add(expires).UnixMilli(),
			Feeds:         []legacyFeed{{Purpose: PurposeUserMedia}},
			FociActive:    lf,
			FociPreferred: lf,
		}},
	}}}
}
