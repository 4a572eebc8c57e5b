// The test page of internal/lkbrowser. It joins the LiveKit room named by
// the token in its URL (?url=ws://…&token=…), publishes the fake camera and
// microphone, attaches what it receives, and reports to the test through:
//
//   window.lk          {state, identity, errors[], events[]}
//   window.lkStats()   a promise of getStats() summed per remote participant
//   window.lkRoom      the livekit-client Room
//
// Room options follow what Element Call uses (adaptive stream, dynacast,
// simulcast); ?adaptive=0, ?dynacast=0 and ?simulcast=0 turn them off, and
// ?log=debug raises livekit-client's log level.
'use strict';

(() => {
  const LK = window.LivekitClient;
  const q = new URLSearchParams(location.search);
  const lk = window.lk = { state: 'loading', identity: '', errors: [], events: [] };
  const stateEl = document.getElementById('state');

  function setState(s) {
    lk.state = s;
    stateEl.textContent = s;
  }
  function note(what) {
    lk.events.push({ at: Date.now(), what });
    console.log('lk: ' + what);
  }
  function fail(where, e) {
    const msg = where + ': ' + (e && e.message ? e.message : String(e));
    lk.errors.push(msg);
    document.getElementById('errors').textContent = lk.errors.join('\n');
    setState('error');
    console.error('lk: ' + msg);
  }

  if (!LK) {
    fail('load', 'window.LivekitClient is missing');
    return;
  }
  document.getElementById('version').textContent = LK.version;
  LK.setLogLevel(q.get('log') || 'info');

  const room = new LK.Room({
    adaptiveStream: q.get('adaptive') !== '0',
    dynacast: q.get('dynacast') !== '0',
    publishDefaults: { simulcast: q.get('simulcast') !== '0' },
  });
  window.lkRoom = room;

  const E = LK.RoomEvent;
  room
    .on(E.ParticipantConnected, (p) => note('participant connected ' + p.identity))
    .on(E.ParticipantDisconnected, (p) => note('participant disconnected ' + p.identity))
    .on(E.TrackPublished, (pub, p) => note(`track published ${p.identity} ${pub.kind} ${pub.trackSid}`))
    .on(E.TrackSubscribed, (track, pub, p) => {
      note(`track subscribed ${p.identity} ${track.kind} ${pub.trackSid}`);
      const el = track.attach();
      el.id = `remote-${p.identity}-${track.kind}`;
      if (track.kind === 'video') {
        const fig = document.createElement('figure');
        const cap = document.createElement('figcaption');
        cap.textContent = p.identity;
        fig.append(el, cap);
        document.getElementById('remote').append(fig);
      } else {
        document.body.append(el);
      }
    })
    .on(E.TrackUnsubscribed, (track, pub, p) => {
      note(`track unsubscribed ${p.identity} ${track.kind} ${pub.trackSid}`);
      track.detach().forEach((el) => (el.closest('figure') || el).remove());
    })
    .on(E.TrackSubscriptionFailed, (sid, p, err) => fail('subscribe ' + sid + ' of ' + (p && p.identity), err))
    .on(E.TrackMuted, (pub, p) => note(`muted ${p.identity} ${pub.kind}`))
    .on(E.TrackUnmuted, (pub, p) => note(`unmuted ${p.identity} ${pub.kind}`))
    .on(E.Reconnecting, () => note('reconnecting'))
    .on(E.Reconnected, () => note('reconnected'))
    .on(E.ConnectionStateChanged, (s) => note('connection ' + s))
    .on(E.Disconnected, (reason) => {
      note('disconnected ' + reason);
      if (lk.state !== 'error') setState('disconnected');
    })
    .on(E.MediaDevicesError, (e) => fail('media devices', e));

  async function start() {
    const url = q.get('url');
    const token = q.get('token');
    if (!url || !token) {
      throw new Error('the page needs ?url= and ?token=');
    }
    setState('connecting');
    await room.connect(url, token);
    lk.identity = room.localParticipant.identity;
    document.getElementById('identity').textContent = lk.identity;
    setState('connected');
    await room.localParticipant.enableCameraAndMicrophone();
    const cam = room.localParticipant.getTrackPublication(LK.Track.Source.Camera);
    if (cam && cam.track) {
      cam.track.attach(document.getElementById('local'));
    }
    setState('publishing');
  }
  start().catch((e) => fail('start', e));

  // getStats() of each remote participant's tracks, and of what this page
  // sends, summed over the RTP streams of a kind.
  function sum(report, dir, into) {
    report.forEach((s) => {
      if (s.type !== dir) return;
      const k = into[s.kind] || (into[s.kind] = {
        packets: 0, bytes: 0, framesDecoded: 0, framesEncoded: 0, frameWidth: 0, frameHeight: 0,
      });
      k.packets += (dir === 'inbound-rtp' ? s.packetsReceived : s.packetsSent) || 0;
      k.bytes += (dir === 'inbound-rtp' ? s.bytesReceived : s.bytesSent) || 0;
      k.framesDecoded += s.framesDecoded || 0;
      k.framesEncoded += s.framesEncoded || 0;
      k.frameWidth = Math.max(k.frameWidth, s.frameWidth || 0);
      k.frameHeight = Math.max(k.frameHeight, s.frameHeight || 0);
    });
  }
  window.lkStats = async () => {
    const out = { remote: {}, local: {} };
    for (const p of room.remoteParticipants.values()) {
      const r = (out.remote[p.identity] = {});
      for (const pub of p.trackPublications.values()) {
        const report = pub.track && (await pub.track.getRTCStatsReport());
        if (report) sum(report, 'inbound-rtp', r);
      }
    }
    for (const pub of room.localParticipant.trackPublications.values()) {
      const report = pub.track && (await pub.track.getRTCStatsReport());
      if (report) sum(report, 'outbound-rtp', out.local);
    }
    return out;
  };
})();
