package matrixclient

import (
	"context"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Encryptor encrypts the to-device messages a Client sends and decrypts
// the encrypted ones it receives (Options.Encryptor). Olm, in crypto.go,
// is one on mautrix's OlmMachine; it needs -tags goolm, this file does
// not.
type Encryptor interface {
	// EncryptToDevice returns what goes on the wire instead of (typ,
	// content) to one device: m.room.encrypted and its content.
	EncryptToDevice(ctx context.Context, user id.UserID, device id.DeviceID, typ event.Type, content json.RawMessage) (event.Type, json.RawMessage, error)
	// DecryptToDevice decrypts an m.room.encrypted to-device event. It
	// fails unless the sender key belongs to a device of the sender.
	DecryptToDevice(ctx context.Context, evt *event.Event) (Decrypted, error)
}

// Decrypted is the plaintext of an encrypted to-device message.
type Decrypted struct {
	Type    string
	Content json.RawMessage
	// SenderDevice is the device whose keys the message was encrypted
	// with.
	SenderDevice id.DeviceID
}

// seal is what sendToDevice puts on the wire for (typ, raw): the same
// without an Encryptor, m.room.encrypted with one.
func (c *Client) seal(ctx context.Context, typ event.Type, user id.UserID, device id.DeviceID, raw json.RawMessage) (event.Type, json.RawMessage, error) {
	if c.opts.Encryptor == nil {
		return typ, raw, nil
	}
	return c.opts.Encryptor.EncryptToDevice(ctx, user, device, typ, raw)
}

// open returns the type and content of a to-device event as the call
// reads them, decrypting m.room.encrypted; ok is false when it cannot
// (recorded as a problem). A client that encrypts expects the focus to
// answer encrypted, so a plaintext m.call.* is a problem too, though it
// is still handled.
func (c *Client) open(ctx context.Context, evt *event.Event) (typ string, raw json.RawMessage, encrypted, ok bool) {
	typ, raw = evt.Type.Type, evt.Content.VeryRaw
	if typ != event.ToDeviceEncrypted.Type {
		if c.opts.Encryptor != nil && strings.HasPrefix(typ, "m.call.") {
			c.problem("%s from %s in plaintext, though this client writes encrypted", typ, evt.Sender)
		}
		return typ, raw, false, true
	}
	if c.opts.Encryptor == nil {
		c.problem("encrypted to-device message from %s, and no Encryptor", evt.Sender)
		return typ, raw, true, false
	}
	dec, err := c.opts.Encryptor.DecryptToDevice(ctx, evt)
	if err != nil {
		c.problem("decrypt a to-device message from %s: %v", evt.Sender, err)
		return typ, raw, true, false
	}
	c.mu.Lock()
	cl := c.cur
	c.mu.Unlock()
	if cl != nil && evt.Sender == cl.focus.UserID && dec.SenderDevice != cl.focus.DeviceID {
		c.problem("%s from %s encrypted by device %s, not the focus's %s", dec.Type, evt.Sender, dec.SenderDevice, cl.focus.DeviceID)
	}
	return dec.Type, dec.Content, true, true
}
