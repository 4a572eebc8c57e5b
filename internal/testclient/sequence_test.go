package testclient

import "testing"

func TestSeqTracker(t *testing.T) {
	tests := []struct {
		name    string
		seqs    []uint16
		want    SeqStats
		inOrder []bool // nil: not checked
	}{
		{
			name: "continuous",
			seqs: []uint16{10, 11, 12, 13},
			want: SeqStats{Packets: 4, Highest: 13},
		},
		{
			name:    "wraparound is continuous",
			seqs:    []uint16{65534, 65535, 0, 1},
			want:    SeqStats{Packets: 4, Highest: 65536 + 1},
			inOrder: []bool{true, true, true, true},
		},
		{
			name: "gap",
			seqs: []uint16{1, 2, 5, 6},
			want: SeqStats{Packets: 4, Gaps: 1, Missing: 2, Highest: 6},
		},
		{
			name: "gap across wrap",
			seqs: []uint16{65534, 1},
			want: SeqStats{Packets: 2, Gaps: 1, Missing: 2, Highest: 65536 + 1},
		},
		{
			name:    "reorder fills the hole",
			seqs:    []uint16{1, 3, 2, 4},
			want:    SeqStats{Packets: 4, Gaps: 1, Reordered: 1, Highest: 4},
			inOrder: []bool{true, true, false, true},
		},
		{
			name:    "reorder across wrap",
			seqs:    []uint16{65535, 1, 0},
			want:    SeqStats{Packets: 3, Gaps: 1, Reordered: 1, Highest: 65536 + 1},
			inOrder: []bool{true, true, false},
		},
		{
			name:    "reorder below the first packet",
			seqs:    []uint16{0, 65535},
			want:    SeqStats{Packets: 2, Reordered: 1, Missing: -1, Highest: 0},
			inOrder: []bool{true, false},
		},
		{
			name: "duplicate of highest",
			seqs: []uint16{1, 2, 2, 3},
			want: SeqStats{Packets: 4, Duplicates: 1, Highest: 3},
		},
		{
			name: "duplicate of older",
			seqs: []uint16{1, 2, 3, 1},
			want: SeqStats{Packets: 4, Duplicates: 1, Highest: 3},
		},
		{
			name: "late retransmission after duplicate is a duplicate",
			seqs: []uint16{1, 3, 2, 2},
			want: SeqStats{Packets: 4, Gaps: 1, Reordered: 1, Duplicates: 1, Highest: 3},
		},
		{
			name: "too old for the window",
			seqs: append(seqRun(100, 1200), 100),
			want: SeqStats{Packets: 1201, Late: 1, Highest: 1299},
		},
		{
			name: "big jump clears reused slots",
			// 1024 shares its window slot with 0, so after the jump a late
			// 1024 must not look like a duplicate of 0.
			seqs: []uint16{0, 2000, 1024},
			want: SeqStats{Packets: 3, Gaps: 1, Missing: 1998, Reordered: 1, Highest: 2000},
		},
		{
			name: "many wraps",
			seqs: seqRun(65000, 3*65536),
			want: SeqStats{Packets: 3 * 65536, Highest: 65000 + 3*65536 - 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr SeqTracker
			for i, s := range tt.seqs {
				got := tr.Push(s)
				if tt.inOrder != nil && got != tt.inOrder[i] {
					t.Errorf("Push(%d) #%d in order = %v, want %v", s, i, got, tt.inOrder[i])
				}
			}
			if got := tr.Stats(); got != tt.want {
				t.Errorf("stats = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

// seqRun returns n consecutive sequence numbers from first, wrapping.
func seqRun(first uint16, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = first + uint16(i)
	}
	return s
}
