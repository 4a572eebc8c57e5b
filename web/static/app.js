// The focus reference page: publish a camera over WHIP, watch a room over
// WHEP, and show what getStats() says about both. Plain JavaScript, no build
// step, nothing loaded from elsewhere.
//
// Test hooks, read by the browser tests and handy in the console:
//   window.focusState  {publish: phase, watch: phase}
//   window.focusStats  {publish: {...}, watch: {...}}, refreshed every second;
//                      publish.layers lists the simulcast layers sent,
//                      watch.asked the size the viewer asked the focus for
//   window.focusErrors [{side, message, time}], every error shown on the page
//
// Query string: room, mode=publish|watch, autostart=1; simulcast=1 for the
// publisher; width=W&height=H (or size=fit) for the watcher, which it passes
// on to the WHEP POST.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  const GATHER_TIMEOUT_MS = 5000;
  const HTTP_TIMEOUT_MS = 15000;
  const STATS_INTERVAL_MS = 1000;
  const LOG_LINES = 100;

  // Simulcast sends the camera three times, lowest first: the focus numbers
  // layers in the order of the offer's RIDs and reads each one's size from
  // its VP8 keyframes. Chrome sends three layers only from about 960x540
  // up, hence the camera size.
  const SIMULCAST_LAYERS = [
    { rid: 'q', scaleResolutionDownBy: 4 },
    { rid: 'h', scaleResolutionDownBy: 2 },
    { rid: 'f', scaleResolutionDownBy: 1 },
  ];
  const SIMULCAST_CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };
  // The focus refuses larger sizes (and anything but whole numbers).
  const MAX_VIEW_SIZE = 16384;

  const hooks = {
    state: { publish: 'idle', watch: 'idle' },
    stats: { publish: {}, watch: {} },
    errors: [],
  };
  window.focusState = hooks.state;
  window.focusStats = hooks.stats;
  window.focusErrors = hooks.errors;

  // HTTPError keeps the status and the body that the server sent, so the page
  // can show the server's own words.
  class HTTPError extends Error {
    constructor(method, url, res, body) {
      const text = body.trim();
      super(`${method} ${url} failed: HTTP ${res.status} ${res.statusText}` + (text ? `: ${text}` : ''));
      this.status = res.status;
      this.body = text;
    }
  }

  function log(side, message, isError) {
    const li = document.createElement('li');
    if (isError) li.className = 'error';
    const time = new Date().toLocaleTimeString();
    li.textContent = `${time} ${side}: ${message}`;
    const list = $('log');
    list.prepend(li);
    while (list.children.length > LOG_LINES) list.lastElementChild.remove();
    (isError ? console.error : console.log)(`focus ${side}: ${message}`);
  }

  async function fetchWithTimeout(url, init) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), HTTP_TIMEOUT_MS);
    try {
      return await fetch(url, { ...init, signal: ctl.signal, cache: 'no-store' });
    } catch (err) {
      if (err.name === 'AbortError') {
        throw new Error(`${init.method} ${url}: no answer within ${HTTP_TIMEOUT_MS / 1000} s`);
      }
      throw new Error(`${init.method} ${url}: ${err.message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  // gatheringComplete waits until ICE gathering ends, because WHIP and WHEP
  // here send the whole offer at once (no trickle). After the timeout it goes
  // on with the candidates gathered so far.
  function gatheringComplete(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const timer = setTimeout(done, GATHER_TIMEOUT_MS);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function formatBitrate(bps) {
    if (bps === undefined) return '–';
    if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
    return `${Math.round(bps / 1e3)} kbit/s`;
  }

  // Session is what publishing and watching share: one PeerConnection, one
  // WHIP or WHEP resource, the figures, and the error area.
  class Session {
    constructor(side, endpoint, rtpType) {
      this.side = side;
      this.endpoint = endpoint;
      this.rtpType = rtpType;
      this.pc = null;
      this.resource = null;
      this.token = '';
      this.timer = null;
      this.prev = new Map();
    }

    el(name) { return $(`${this.side}-${name}`); }

    setPhase(phase) {
      hooks.state[this.side] = phase;
      this.el('phase').textContent = phase;
      document.body.dataset[this.side] = phase;
      this.updateButtons(phase);
    }

    showError(err) {
      const message = err instanceof Error ? err.message : String(err);
      const box = this.el('error');
      box.textContent = message;
      box.hidden = false;
      hooks.errors.push({ side: this.side, message, time: Date.now() });
      log(this.side, message, true);
    }

    clearError() {
      const box = this.el('error');
      box.textContent = '';
      box.hidden = true;
    }

    authHeaders() {
      return this.token ? { Authorization: `Bearer ${this.token}` } : {};
    }

    // negotiate sends the complete offer and applies the answer. It returns
    // false when the session was stopped meanwhile. query, when not empty,
    // goes on the POST's URL.
    async negotiate(pc, room, query) {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc);
      if (this.pc !== pc) return false;
      let url = `${this.endpoint}/${encodeURIComponent(room)}`;
      if (query && query.toString()) url += `?${query}`;
      log(this.side, `POST ${url}`);
      const res = await fetchWithTimeout(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...this.authHeaders() },
        body: pc.localDescription.sdp,
      });
      const body = await res.text();
      if (res.status !== 201) throw new HTTPError('POST', url, res, body);
      const location = res.headers.get('Location');
      if (!location) throw new Error(`POST ${url}: the 201 answer has no Location header`);
      const resource = new URL(location, res.url).toString();
      if (this.pc !== pc) {
        // Stopped while the request was out: end the resource just made.
        this.deleteResource(resource);
        return false;
      }
      this.resource = resource;
      log(this.side, `created ${new URL(resource).pathname}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      return true;
    }

    newPeerConnection() {
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      pc.addEventListener('connectionstatechange', () => {
        if (this.pc !== pc) return;
        const state = pc.connectionState;
        this.el('connection').textContent = state;
        log(this.side, `connection ${state}`);
        if (state === 'connected') {
          this.setPhase(this.side === 'publish' ? 'publishing' : 'watching');
        } else if (state === 'failed') {
          this.setPhase('failed');
          this.showError(`connection failed (ICE state ${pc.iceConnectionState}): ` +
            'no media path to the focus; check that its UDP port is reachable');
        }
      });
      pc.addEventListener('iceconnectionstatechange', () => {
        if (this.pc === pc) log(this.side, `ICE ${pc.iceConnectionState}`);
      });
      this.pc = pc;
      this.startStats();
      return pc;
    }

    async deleteResource(resource) {
      try {
        const res = await fetchWithTimeout(resource, { method: 'DELETE', headers: this.authHeaders() });
        const body = await res.text();
        // 404 means the focus already ended the session, which is what we want.
        if (!res.ok && res.status !== 404) throw new HTTPError('DELETE', resource, res, body);
        log(this.side, `deleted ${new URL(resource).pathname} (HTTP ${res.status})`);
      } catch (err) {
        this.showError(err);
      }
    }

    // stopSession closes the PeerConnection and ends the resource.
    async stopSession() {
      this.stopStats();
      const pc = this.pc;
      const resource = this.resource;
      this.pc = null;
      this.resource = null;
      if (pc) pc.close();
      this.el('connection').textContent = pc ? 'closed' : '–';
      if (resource) await this.deleteResource(resource);
    }

    startStats() {
      this.stopStats();
      this.prev.clear();
      this.timer = setInterval(() => this.collectStats(), STATS_INTERVAL_MS);
    }

    stopStats() {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    }

    async collectStats() {
      const pc = this.pc;
      if (!pc) return;
      let report;
      try {
        report = await pc.getStats();
      } catch (err) {
        log(this.side, `getStats: ${err.message}`, true);
        return;
      }
      if (this.pc !== pc) return;
      const s = this.summarize(pc, report);
      hooks.stats[this.side] = s;
      this.render(s);
    }

    // rate turns a growing counter into a per-second rate since the last
    // report, keyed by stats id and field.
    rate(key, value, timestamp) {
      const prev = this.prev.get(key);
      this.prev.set(key, { value, timestamp });
      if (!prev || timestamp <= prev.timestamp) return undefined;
      return (value - prev.value) * 1000 / (timestamp - prev.timestamp);
    }

    summarize(pc, report) {
      const s = {
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
        time: Date.now(),
        audio: { packets: 0, bytes: 0, bitrate: 0 },
        video: { packets: 0, bytes: 0, bitrate: 0 },
        layers: [],
      };
      const byId = new Map();
      report.forEach((r) => byId.set(r.id, r));
      const bytesField = this.rtpType === 'outbound-rtp' ? 'bytesSent' : 'bytesReceived';
      const packetsField = this.rtpType === 'outbound-rtp' ? 'packetsSent' : 'packetsReceived';
      for (const r of byId.values()) {
        if (r.type === 'transport') {
          // Bundled media has one transport; prefer the one that carries SRTP.
          if (r.srtpCipher || !s.cipher) {
            s.cipher = r.srtpCipher || '';
            s.dtlsCipher = r.dtlsCipher || '';
            s.dtlsState = r.dtlsState || '';
            const pair = byId.get(r.selectedCandidatePairId);
            if (pair) {
              const local = byId.get(pair.localCandidateId);
              const remote = byId.get(pair.remoteCandidateId);
              if (local && remote) {
                s.candidatePair = `${local.address}:${local.port} → ${remote.address}:${remote.port} ${local.protocol}`;
              }
            }
          }
        }
        if (r.type !== this.rtpType) continue;
        const kind = r.kind || r.mediaType;
        const m = s[kind];
        if (!m) continue;
        m.packets += r[packetsField] || 0;
        m.bytes += r[bytesField] || 0;
        const bitrate = (this.rate(`${r.id}/bytes`, r[bytesField] || 0, r.timestamp) || 0) * 8;
        m.bitrate += bitrate;
        if (kind === 'video' && r.rid) {
          // One outbound-rtp per simulcast layer. Chrome stops sending a
          // layer while its bandwidth estimate cannot carry it.
          s.layers.push({
            rid: r.rid,
            width: r.frameWidth || 0,
            height: r.frameHeight || 0,
            fps: r.framesPerSecond || 0,
            bitrate,
            active: r.active !== false,
            limitation: r.qualityLimitationReason || '',
          });
        }
        const codec = byId.get(r.codecId);
        if (codec) m.codec = codec.mimeType;
        if (this.rtpType === 'inbound-rtp') m.packetsLost = (m.packetsLost || 0) + (r.packetsLost || 0);
        if (kind === 'video') {
          // Simulcast: the resolution is the top layer's.
          if (r.frameWidth && r.frameWidth >= (m.width || 0)) {
            m.width = r.frameWidth;
            m.height = r.frameHeight;
          }
          if (r.framesPerSecond !== undefined) m.fps = r.framesPerSecond;
          if (r.framesDecoded !== undefined) m.framesDecoded = (m.framesDecoded || 0) + r.framesDecoded;
          if (r.framesEncoded !== undefined) m.framesEncoded = (m.framesEncoded || 0) + r.framesEncoded;
          if (r.framesDropped !== undefined) m.framesDropped = (m.framesDropped || 0) + r.framesDropped;
          if (r.keyFramesDecoded !== undefined) m.keyFramesDecoded = r.keyFramesDecoded;
          if (r.nackCount !== undefined) m.nackCount = (m.nackCount || 0) + r.nackCount;
        }
      }
      const order = SIMULCAST_LAYERS.map((l) => l.rid);
      s.layers.sort((a, b) => order.indexOf(a.rid) - order.indexOf(b.rid) || a.width - b.width);
      // Flat copies of the numbers tests and people look at most.
      s.width = s.video.width || 0;
      s.height = s.video.height || 0;
      s.fps = s.video.fps || 0;
      s.bitrate = s.audio.bitrate + s.video.bitrate;
      s.framesDecoded = s.video.framesDecoded || 0;
      s.framesEncoded = s.video.framesEncoded || 0;
      s.audioPackets = s.audio.packets;
      s.videoPackets = s.video.packets;
      return s;
    }

    render(s) {
      this.el('connection').textContent = s.connectionState + (s.candidatePair ? ` (${s.candidatePair})` : '');
      this.el('resolution').textContent = s.width ? `${s.width}×${s.height}` : '–';
      this.el('fps').textContent = s.fps ? `${Math.round(s.fps)} fps` : '–';
      this.el('bitrate').textContent = formatBitrate(s.bitrate);
      const codecs = [s.audio.codec, s.video.codec].filter(Boolean).join(', ');
      this.el('codecs').textContent = codecs || '–';
      this.el('cipher').textContent = s.cipher || '–';
    }
  }

  class Publisher extends Session {
    constructor() {
      super('publish', 'whip', 'outbound-rtp');
      this.stream = null;
      this.el('camera').addEventListener('click', () => this.startCamera().catch((e) => this.fail(e)));
      this.el('form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        this.publish().catch((e) => this.fail(e));
      });
      this.el('stop').addEventListener('click', () => this.stop());
    }

    updateButtons(phase) {
      const busy = phase === 'starting camera' || phase === 'connecting' || phase === 'publishing';
      this.el('camera').disabled = busy || this.stream !== null;
      this.el('start').disabled = busy;
      this.el('simulcast').disabled = busy;
      this.el('stop').disabled = phase === 'idle' || phase === 'stopped';
    }

    fail(err) {
      this.showError(err);
      if (this.pc) this.stopSession();
      this.setPhase('error');
    }

    async startCamera() {
      const simulcast = this.el('simulcast').checked;
      if (this.stream) {
        if (simulcast) await this.raiseCameraSize(this.stream);
        return this.stream;
      }
      this.clearError();
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error('this page cannot use the camera: browsers allow it only in a secure context, ' +
          'that is over HTTPS, or over plain HTTP to localhost or 127.0.0.1');
      }
      this.setPhase('starting camera');
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: simulcast ? SIMULCAST_CAMERA : true });
      } catch (err) {
        this.setPhase('idle');
        throw new Error(`camera and microphone: ${err.name}: ${err.message}`);
      }
      this.stream = stream;
      this.el('video').srcObject = stream;
      const names = stream.getTracks().map((t) => `${t.kind} "${t.label}"`).join(', ');
      log(this.side, `got ${names}`);
      this.setPhase('camera on');
      return stream;
    }

    // raiseCameraSize asks a camera started without simulcast for the size
    // simulcast needs. A camera that cannot do it sends what it has, and
    // Chrome then sends fewer layers.
    async raiseCameraSize(stream) {
      for (const track of stream.getVideoTracks()) {
        const { width = 0 } = track.getSettings();
        if (width >= 1280) continue;
        try {
          await track.applyConstraints(SIMULCAST_CAMERA);
          const got = track.getSettings();
          log(this.side, `camera now ${got.width}×${got.height}`);
        } catch (err) {
          log(this.side, `camera cannot go to 1280×720 (${err.name}); fewer simulcast layers`, true);
        }
      }
    }

    // addVideo adds the camera's video, as three simulcast layers when
    // asked, and then in VP8 only: the focus reads the layers' sizes from
    // VP8 keyframes to give each viewer the layer it asked for.
    addVideo(pc, track, stream, simulcast) {
      const init = { direction: 'sendonly', streams: [stream] };
      if (!simulcast) return pc.addTransceiver(track, init);
      init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
      const tr = pc.addTransceiver(track, init);
      const caps = RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video');
      if (caps && tr.setCodecPreferences) {
        const vp8 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
        const repair = caps.codecs.filter((c) => /^video\/(rtx|red|ulpfec)$/i.test(c.mimeType));
        if (vp8.length) tr.setCodecPreferences([...vp8, ...repair]);
      }
      const layers = tr.sender.getParameters().encodings || [];
      log(this.side, `simulcast: ${layers.map((e) => e.rid).join(', ') || 'not supported by this browser'}`);
      return tr;
    }

    async publish() {
      this.clearError();
      const room = this.el('room').value.trim();
      if (!room) throw new Error('enter a room name');
      this.token = this.el('token').value.trim();
      const stream = await this.startCamera();
      await this.stopSession();
      const pc = this.newPeerConnection();
      const simulcast = this.el('simulcast').checked;
      for (const track of stream.getTracks()) {
        if (track.kind === 'video') this.addVideo(pc, track, stream, simulcast);
        else pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      }
      this.setPhase('connecting');
      if (!await this.negotiate(pc, room)) return;
      const link = new URL(location.href);
      link.search = new URLSearchParams({ room, mode: 'watch', autostart: '1' }).toString();
      const a = this.el('share-link');
      a.href = link.toString();
      a.textContent = link.toString();
      this.el('share').hidden = false;
    }

    render(s) {
      super.render(s);
      this.el('layers').textContent = s.layers.length ? s.layers.map((l) => {
        if (!l.active) return `${l.rid} off`;
        const size = l.width ? `${l.width}×${l.height}` : 'not sending';
        return `${l.rid} ${size} ${formatBitrate(l.bitrate)}` + (l.limitation && l.limitation !== 'none' ? ` (${l.limitation})` : '');
      }).join(' · ') : '–';
    }

    async stop() {
      await this.stopSession();
      if (this.stream) {
        for (const track of this.stream.getTracks()) track.stop();
        this.stream = null;
        this.el('video').srcObject = null;
      }
      this.el('share').hidden = true;
      this.setPhase('stopped');
    }
  }

  class Watcher extends Session {
    constructor() {
      super('watch', 'whep', 'inbound-rtp');
      this.asked = null;
      this.urlSize = null;
      this.el('form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        this.watch().catch((e) => this.fail(e));
      });
      this.el('stop').addEventListener('click', () => this.stop());
      this.el('unmute').addEventListener('click', () => this.toggleMute());
    }

    updateButtons(phase) {
      const busy = phase === 'connecting' || phase === 'watching';
      this.el('start').disabled = busy;
      this.el('size').disabled = busy;
      this.el('stop').disabled = phase === 'idle' || phase === 'stopped';
    }

    fail(err) {
      this.showError(err);
      if (this.pc) this.stopSession();
      // A video element waiting on a stream that gets no frames also holds
      // back the page's load event; let it go.
      this.el('video').srcObject = null;
      this.setPhase('error');
    }

    toggleMute() {
      const video = this.el('video');
      video.muted = !video.muted;
      this.el('unmute').textContent = video.muted ? 'Unmute' : 'Mute';
      if (!video.muted) video.play().catch((e) => this.showError(`play: ${e.message}`));
    }

    // askedSize returns the width and height (strings, either may be
    // missing) the viewer asks the focus for, or null for the top layer. A
    // size given in the page's URL goes to the focus as typed, so the focus
    // judges it and the page shows its answer.
    askedSize() {
      const choice = this.el('size').value;
      if (choice === '') return null;
      if (choice === 'url') return this.urlSize;
      if (choice === 'fit') {
        // The player's box in device pixels: what the screen can show.
        const box = this.el('video').getBoundingClientRect();
        const dpr = window.devicePixelRatio || 1;
        const px = (v) => String(Math.min(MAX_VIEW_SIZE, Math.max(1, Math.round(v * dpr))));
        return { width: px(box.width), height: px(box.height) };
      }
      const [width, height] = choice.split('x');
      return { width, height };
    }

    // setURLSize adds the size from the page's URL to the choices and picks it.
    setURLSize(width, height) {
      this.urlSize = {};
      if (width !== null) this.urlSize.width = width;
      if (height !== null) this.urlSize.height = height;
      const opt = document.createElement('option');
      opt.value = 'url';
      opt.textContent = `${width ?? 'any'}×${height ?? 'any'} (from the URL)`;
      this.el('size').append(opt);
      this.el('size').value = 'url';
    }

    async watch() {
      this.clearError();
      const room = this.el('room').value.trim();
      if (!room) throw new Error('enter a room name');
      this.token = this.el('token').value.trim();
      const size = this.askedSize();
      const query = new URLSearchParams(size || {});
      this.asked = size;
      this.el('asked').textContent = size ? `${size.width ?? 'any'}×${size.height ?? 'any'}` : 'top layer';
      await this.stopSession();
      const pc = this.newPeerConnection();
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
      const stream = new MediaStream();
      const video = this.el('video');
      video.srcObject = stream;
      pc.addEventListener('track', (ev) => {
        stream.addTrack(ev.track);
        log(this.side, `receiving ${ev.track.kind}`);
        video.play().catch((e) => log(this.side, `play: ${e.message}`, true));
      });
      this.setPhase('connecting');
      await this.negotiate(pc, room, query);
    }

    summarize(pc, report) {
      const s = super.summarize(pc, report);
      s.asked = this.asked;
      return s;
    }

    render(s) {
      super.render(s);
      this.el('frames').textContent = s.framesDecoded ? String(s.framesDecoded) : '–';
      const lost = (s.audio.packetsLost || 0) + (s.video.packetsLost || 0);
      this.el('packets').textContent = `${s.audioPackets} audio, ${s.videoPackets} video` +
        (lost ? `, ${lost} lost` : '');
    }

    async stop() {
      await this.stopSession();
      this.el('video').srcObject = null;
      this.setPhase('stopped');
    }
  }

  const publisher = new Publisher();
  const watcher = new Watcher();
  publisher.setPhase('idle');
  watcher.setPhase('idle');

  // The query string preselects the room and the mode, and autostart=1
  // starts at once: /?room=abc&mode=watch&autostart=1
  const params = new URLSearchParams(location.search);
  const mode = params.get('mode') === 'watch' ? 'watch' : 'publish';
  const room = params.get('room');
  if (room) {
    $('publish-room').value = room;
    $('watch-room').value = room;
  }
  if (params.has('mode')) {
    document.body.dataset.mode = mode;
    $(mode).classList.add('selected');
  }
  if (params.get('simulcast') === '1') $('publish-simulcast').checked = true;
  if (params.has('width') || params.has('height')) {
    watcher.setURLSize(params.get('width'), params.get('height'));
  } else if (params.has('size') && [...$('watch-size').options].some((o) => o.value === params.get('size'))) {
    $('watch-size').value = params.get('size');
  }
  if (params.get('autostart') === '1') {
    if (mode === 'watch') watcher.watch().catch((e) => watcher.fail(e));
    else publisher.publish().catch((e) => publisher.fail(e));
  }

  // Tell the focus we are gone when the tab closes, so it need not wait for
  // ICE to time out. keepalive lets the request outlive the page.
  window.addEventListener('pagehide', () => {
    for (const s of [publisher, watcher]) {
      if (s.resource) {
        fetch(s.resource, { method: 'DELETE', headers: s.authHeaders(), keepalive: true }).catch(() => {});
      }
    }
  });
})();
