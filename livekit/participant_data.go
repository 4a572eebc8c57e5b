package livekit

import (
	"slices"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Data packets: a client sends on the _reliable and _lossy channels of
// its publisher connection; the focus stamps the sender on each packet
// and relays it on the same kind of channel of every other participant's
// subscriber connection (the focus's own channels there), or only to the
// destinations the packet names.

// The data channel labels LiveKit clients use.
const (
	reliableLabel = "_reliable"
	lossyLabel    = "_lossy"
)

const (
	// maxDataPacket bounds one relayed packet: SCTP messages of browsers
	// stop at 256 KiB, LiveKit's recommendation at 15 KiB.
	maxDataPacket = 256 << 10
	// maxBuffered is how much a receiver's channel may hold before
	// packets to it are dropped.
	maxBuffered = 4 << 20
)

// onDataChannel takes the client's data channels on the publisher
// connection.
func (p *participant) onDataChannel(dc *webrtc.DataChannel) {
	var kind livekit.DataPacket_Kind
	switch dc.Label() {
	case reliableLabel:
		kind = livekit.DataPacket_RELIABLE
	case lossyLabel:
		kind = livekit.DataPacket_LOSSY
	default:
		p.log.Debug().Str("label", dc.Label()).Msg("ignoring a data channel")
		return
	}
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.onData(kind, msg) })
}

// onData relays one packet from the client.
func (p *participant) onData(kind livekit.DataPacket_Kind, msg webrtc.DataChannelMessage) {
	if !p.grants.Video.GetCanPublishData() || len(msg.Data) > maxDataPacket || p.isClosed() {
		return
	}
	dp := &livekit.DataPacket{}
	var err error
	if msg.IsString {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(msg.Data, dp)
	} else {
		err = proto.Unmarshal(msg.Data, dp)
	}
	if err != nil {
		p.log.Debug().Err(err).Msg("ignoring a malformed data packet")
		return
	}
	if !stampDataPacket(dp, kind, p.sid, p.identity, p.hidden()) {
		return
	}
	b, err := proto.Marshal(dp)
	if err != nil {
		return
	}
	identities := dp.GetDestinationIdentities()
	sids := dp.GetUser().GetDestinationSids()
	for _, o := range p.s.members(p.room) {
		if o == p {
			continue
		}
		if (len(identities) > 0 || len(sids) > 0) && !slices.Contains(identities, o.identity) && !slices.Contains(sids, o.sid) {
			continue
		}
		o.sendData(kind, b)
	}
}

// stampDataPacket makes a client's packet one to relay: the sender is
// the focus's to state, not the client's, and a user packet's
// destinations are mirrored in both places clients read them. It reports
// false for packets that are not relayed.
func stampDataPacket(dp *livekit.DataPacket, kind livekit.DataPacket_Kind, sid, identity string, hidden bool) bool {
	switch v := dp.Value.(type) {
	case nil, *livekit.DataPacket_Metrics, *livekit.DataPacket_Speaker:
		return false
	case *livekit.DataPacket_User:
		u := v.User
		if u == nil {
			return false
		}
		u.ParticipantSid, u.ParticipantIdentity = sid, identity
		if hidden {
			u.ParticipantSid, u.ParticipantIdentity = "", ""
		}
		if len(dp.DestinationIdentities) > 0 {
			u.DestinationIdentities = dp.DestinationIdentities
		} else {
			dp.DestinationIdentities = u.DestinationIdentities
		}
	}
	dp.Kind = kind
	dp.ParticipantSid, dp.ParticipantIdentity = sid, identity
	if hidden {
		dp.ParticipantIdentity = ""
	}
	return true
}

// sendData sends a relayed packet to the client, if its channel is open
// and not backed up.
func (p *participant) sendData(kind livekit.DataPacket_Kind, b []byte) {
	dc := p.subReliable
	if kind == livekit.DataPacket_LOSSY {
		dc = p.subLossy
	}
	if dc.ReadyState() != webrtc.DataChannelStateOpen {
		return
	}
	if dc.BufferedAmount() > maxBuffered {
		p.log.Debug().Str("kind", kind.String()).Msg("data channel backed up; dropping a packet")
		return
	}
	if err := dc.Send(b); err != nil {
		p.log.Debug().Err(err).Msg("send data packet")
	}
}
