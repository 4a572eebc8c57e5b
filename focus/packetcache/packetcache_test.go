package packetcache

import (
	"bytes"
	"sync"
	"testing"
)

// packet returns a fake RTP packet whose bytes identify seq.
func packet(seq uint16, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq) ^ byte(seq>>8) ^ byte(i)
	}
	return p
}

func TestNewRounds(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{-1, 1}, {0, 1}, {1, 1}, {3, 4}, {512, 512}, {513, 1024}, {4096, 4096}, {5000, 4096}, {1 << 20, 4096},
	} {
		c := New(tc.in)
		if c.Slots() != tc.want || len(c.buf) != tc.want*MaxPacket {
			t.Errorf("New(%d): %d slots, %d bytes; want %d slots", tc.in, c.Slots(), len(c.buf), tc.want)
		}
	}
}

func TestStoreGet(t *testing.T) {
	type op struct {
		store bool
		seq   uint16
		size  int
	}
	for _, tc := range []struct {
		name  string
		slots int
		ops   []op
		get   uint16
		dst   int
		want  int // length expected, 0 for absent
	}{
		{name: "hit", slots: 8, ops: []op{{true, 10, 100}}, get: 10, dst: MaxPacket, want: 100},
		{name: "absent", slots: 8, ops: []op{{true, 10, 100}}, get: 11, dst: MaxPacket},
		{name: "empty cache", slots: 8, get: 0, dst: MaxPacket},
		{name: "full size", slots: 8, ops: []op{{true, 1, MaxPacket}}, get: 1, dst: MaxPacket, want: MaxPacket},
		{name: "too large ignored", slots: 8, ops: []op{{true, 1, MaxPacket + 1}}, get: 1, dst: 2 * MaxPacket},
		{name: "dst too small", slots: 8, ops: []op{{true, 1, 100}}, get: 1, dst: 99},
		{name: "dst exact", slots: 8, ops: []op{{true, 1, 100}}, get: 1, dst: 100, want: 100},
		{name: "overwritten", slots: 8, ops: []op{{true, 1, 100}, {true, 9, 50}}, get: 1, dst: MaxPacket},
		{name: "overwriter present", slots: 8, ops: []op{{true, 1, 100}, {true, 9, 50}}, get: 9, dst: MaxPacket, want: 50},
		{name: "late packet keeps newer", slots: 8, ops: []op{{true, 9, 50}, {true, 1, 100}}, get: 9, dst: MaxPacket, want: 50},
		{name: "late packet within reach", slots: 8, ops: []op{{true, 9, 50}, {true, 5, 70}}, get: 5, dst: MaxPacket, want: 70},
		{name: "too old after jump", slots: 8, ops: []op{{true, 5, 70}, {true, 1000, 10}}, get: 5, dst: MaxPacket},
		{name: "oldest in reach", slots: 8, ops: []op{{true, 5, 70}, {true, 12, 10}}, get: 5, dst: MaxPacket, want: 70},
		{name: "wrap 65535 to 0", slots: 8, ops: []op{{true, 65534, 10}, {true, 65535, 11}, {true, 0, 12}, {true, 1, 13}}, get: 65535, dst: MaxPacket, want: 11},
		{name: "after wrap", slots: 8, ops: []op{{true, 65534, 10}, {true, 65535, 11}, {true, 0, 12}, {true, 1, 13}}, get: 1, dst: MaxPacket, want: 13},
		{name: "wrap overwrites", slots: 4, ops: []op{{true, 65532, 10}, {true, 65533, 11}, {true, 65534, 12}, {true, 65535, 13}, {true, 0, 14}}, get: 65532, dst: MaxPacket},
		{name: "late before wrap", slots: 8, ops: []op{{true, 2, 12}, {true, 65535, 11}}, get: 65535, dst: MaxPacket, want: 11},
		{name: "same seq kept (a duplicate)", slots: 8, ops: []op{{true, 3, 12}, {true, 3, 20}}, get: 3, dst: MaxPacket, want: 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.slots)
			for _, o := range tc.ops {
				c.Store(o.seq, packet(o.seq, o.size))
			}
			dst := make([]byte, tc.dst)
			n := c.Get(tc.get, dst)
			if n != tc.want {
				t.Fatalf("Get(%d) = %d, want %d", tc.get, n, tc.want)
			}
			if n > 0 && !bytes.Equal(dst[:n], packet(tc.get, n)) {
				t.Fatalf("Get(%d) returned the wrong bytes", tc.get)
			}
		})
	}
}

// TestWrapStream stores a long stream across the 16-bit wrap and checks the
// window of packets that must be (and must not be) retrievable.
func TestWrapStream(t *testing.T) {
	c := New(64)
	dst := make([]byte, MaxPacket)
	start := uint16(65000)
	for i := range 1000 {
		seq := start + uint16(i)
		c.Store(seq, packet(seq, 20+i%100))
		for back := range 70 {
			q := seq - uint16(back)
			n := c.Get(q, dst)
			want := back < 64 && back <= i
			if (n > 0) != want {
				t.Fatalf("after storing %d: Get(%d) = %d, want present=%v", seq, q, n, want)
			}
			if n > 0 && !bytes.Equal(dst[:n], packet(q, n)) {
				t.Fatalf("Get(%d): wrong bytes", q)
			}
		}
	}
}

func TestReset(t *testing.T) {
	c := New(16)
	c.Store(100, packet(100, 10))
	c.Reset()
	dst := make([]byte, MaxPacket)
	if n := c.Get(100, dst); n != 0 {
		t.Fatalf("Get after Reset = %d", n)
	}
	// A new SSRC may start far behind the old numbering.
	c.Store(5, packet(5, 30))
	if n := c.Get(5, dst); n != 30 {
		t.Fatalf("Get(5) after Reset and Store = %d, want 30", n)
	}
}

// TestConcurrent runs one writer and several readers; run with -race. A
// reader must only ever see a whole packet of the seq it asked for.
func TestConcurrent(t *testing.T) {
	c := New(128)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, MaxPacket)
			for q := uint16(0); ; q += 7 {
				select {
				case <-done:
					return
				default:
				}
				if n := c.Get(q, dst); n > 0 && !bytes.Equal(dst[:n], packet(q, n)) {
					t.Errorf("Get(%d): torn or wrong packet", q)
					return
				}
			}
		}()
	}
	for i := range 20000 {
		seq := uint16(i * 3 / 2) // some repeats, across the wrap
		c.Store(seq, packet(seq, 1+i%MaxPacket))
		if i%5000 == 0 {
			c.Reset()
		}
	}
	close(done)
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	c := New(512)
	pkt := packet(1, 1200)
	dst := make([]byte, MaxPacket)
	var seq uint16
	if a := testing.AllocsPerRun(1000, func() {
		seq++
		c.Store(seq, pkt)
		c.Get(seq-3, dst)
	}); a != 0 {
		t.Fatalf("Store+Get: %v allocs per run, want 0", a)
	}
}

func BenchmarkStore(b *testing.B) {
	c := New(512)
	pkt := packet(1, 1200)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	var seq uint16
	for b.Loop() {
		seq++
		c.Store(seq, pkt)
	}
}

func BenchmarkGet(b *testing.B) {
	c := New(512)
	for i := range 512 {
		c.Store(uint16(i), packet(uint16(i), 1200))
	}
	dst := make([]byte, MaxPacket)
	b.ReportAllocs()
	b.SetBytes(1200)
	var seq uint16
	for b.Loop() {
		seq++
		c.Get(seq&511, dst)
	}
}

// BenchmarkGetParallel measures readers sharing the lock.
func BenchmarkGetParallel(b *testing.B) {
	c := New(512)
	for i := range 512 {
		c.Store(uint16(i), packet(uint16(i), 1200))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, MaxPacket)
		var seq uint16
		for pb.Next() {
			seq++
			c.Get(seq&511, dst)
		}
	})
}

func TestStoreReportsDuplicates(t *testing.T) {
	c := New(16)
	if c.Store(7, []byte{1}) {
		t.Fatal("a first packet reported as a duplicate")
	}
	if !c.Store(7, []byte{2}) {
		t.Fatal("the same sequence number again was not reported as a duplicate")
	}
	buf := make([]byte, MaxPacket)
	if n := c.Get(7, buf); n != 1 || buf[0] != 1 {
		t.Fatalf("a duplicate replaced the packet: %x", buf[:n])
	}
	if c.Store(8, []byte{3}) || c.Store(7+16, []byte{4}) {
		t.Fatal("new packets reported as duplicates")
	}
	if c.Store(7, []byte{5}) {
		t.Fatal("a packet whose slot was reused is not a known duplicate")
	}
}
