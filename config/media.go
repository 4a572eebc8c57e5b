package config

import "fmt"

// Media tunes forwarding quality: retransmission, speaker detection and
// what publishers are asked to send.
type Media struct {
	// PacketCache is the number of packets kept per published video layer
	// (and remembered per video subscription) to answer NACKs. 1500 bytes
	// each; 512 is over a second of 400 packets a second.
	PacketCache int `yaml:"packet_cache"`
	// SpeakerThresholdDBov is the level, in -dBov (0 loudest, 127
	// silence), above which a smoothed audio level counts as speaking.
	SpeakerThresholdDBov int `yaml:"speaker_threshold_dbov"`
	// MaxAudioForwarded forwards only the loudest N audio tracks of a
	// conference to each subscriber; 0 forwards all.
	MaxAudioForwarded int `yaml:"max_audio_forwarded"`
	// KeepUnwatched keeps publishers sending the lowest layer of a video
	// that nobody watches, so a new viewer starts at once. False tells
	// them to stop, which saves their uplink.
	KeepUnwatched bool `yaml:"keep_unwatched"`
}

func defaultMedia() Media {
	return Media{PacketCache: 512, SpeakerThresholdDBov: 50}
}

func (m Media) validate() error {
	if m.PacketCache < 16 || m.PacketCache > 4096 {
		return errorf("media.packet_cache", fmt.Sprintf("%d is out of range 16-4096", m.PacketCache))
	}
	if m.SpeakerThresholdDBov < 0 || m.SpeakerThresholdDBov > 127 {
		return errorf("media.speaker_threshold_dbov", fmt.Sprintf("%d is out of range 0-127", m.SpeakerThresholdDBov))
	}
	if m.MaxAudioForwarded < 0 {
		return errorf("media.max_audio_forwarded", fmt.Sprintf("%d is negative; use 0 to forward all", m.MaxAudioForwarded))
	}
	return nil
}
