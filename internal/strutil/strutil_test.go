package strutil

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		n    int
		want string
	}{
		{name: "shorter", s: "abc", n: 4, want: "abc"},
		{name: "exactly n", s: "abcd", n: 4, want: "abcd"},
		{name: "longer", s: "abcdefgh", n: 6, want: "abc…"},
		{name: "no room for the ellipsis", s: "abcdefgh", n: 2, want: "ab"},
		{name: "room for the ellipsis only", s: "abcdefgh", n: 3, want: "…"},
		{name: "zero", s: "abc", n: 0, want: ""},
		{name: "negative", s: "abc", n: -1, want: ""},
		{name: "cut inside a rune goes back to its start", s: "ab€cdef", n: 6, want: "ab…"},
		{name: "cut after a rune keeps it", s: "ab€cdef", n: 8, want: "ab€…"},
		{name: "small n inside a rune", s: "€€", n: 2, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Truncate(tc.s, tc.n)
			if got != tc.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
			if tc.n >= 0 && len(got) > tc.n {
				t.Errorf("Truncate(%q, %d) is %d bytes, more than %d", tc.s, tc.n, len(got), tc.n)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Truncate(%q, %d) = %q is not valid UTF-8", tc.s, tc.n, got)
			}
		})
	}
}

func TestTruncateLongMessageFitsMaxLength(t *testing.T) {
	s := strings.Repeat("é", 5000) // 10000 bytes
	got := Truncate(s, 4096)
	if len(got) > 4096 || !strings.HasSuffix(got, Ellipsis) || !utf8.ValidString(got) {
		t.Errorf("Truncate of a 10000-byte message to 4096: %d bytes, ends %q, valid UTF-8 %v", len(got), got[len(got)-6:], utf8.ValidString(got))
	}
}
