package latency

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRequirement feeds arbitrary annotation values to the parser: it
// must refuse or accept them without panicking, and what it accepts must be
// within the documented bounds (1 to 32 targets, weights 1 to 100, trimmed
// non-empty names, no target twice, max-rtt above zero and at most a
// minute) and parse again to the same requirement once written back.
// Seeds: the documented examples and the duplicates trimming used to miss;
// more under testdata/fuzz/FuzzParseRequirement.
func FuzzParseRequirement(f *testing.F) {
	for _, s := range [][2]string{
		{"cluster:member2,origin:eu-users=3", "40ms"},
		{"cluster:a,cluster: a", ""},
		{" cluster : a = 2 ", "1m"},
		{"origin:x=101", "0s"},
		{"", "40ms"},
		{"cluster:", "-1s"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, near, maxRTT string) {
		r, err := ParseRequirement(near, maxRTT)
		if err != nil || r == nil {
			return
		}
		if n := len(r.Targets); n < 1 || n > maxTargets {
			t.Fatalf("accepted %d targets", n)
		}
		seen := map[[2]string]bool{}
		var items []string
		for _, tg := range r.Targets {
			switch {
			case tg.Weight < 1 || tg.Weight > maxWeight:
				t.Fatalf("accepted weight %d", tg.Weight)
			case tg.Name == "" || tg.Name != strings.TrimSpace(tg.Name):
				t.Fatalf("accepted name %q", tg.Name)
			case seen[[2]string{tg.Kind.String(), tg.Name}]:
				t.Fatalf("accepted %s:%s twice", tg.Kind, tg.Name)
			}
			seen[[2]string{tg.Kind.String(), tg.Name}] = true
			items = append(items, tg.Kind.String()+":"+tg.Name+"="+strconv.FormatInt(tg.Weight, 10))
		}
		if maxRTT != "" && (r.MaxRTT <= 0 || r.MaxRTT > time.Minute) {
			t.Fatalf("accepted max-rtt %s", r.MaxRTT)
		}
		again, err := ParseNear(strings.Join(items, ","))
		if err != nil {
			t.Fatalf("accepted targets do not parse again: %v", err)
		}
		if len(again) != len(r.Targets) {
			t.Fatalf("parsed again to %d targets, want %d", len(again), len(r.Targets))
		}
		for i := range again {
			if again[i] != r.Targets[i] {
				t.Fatalf("target %d parsed again to %+v, want %+v", i, again[i], r.Targets[i])
			}
		}
	})
}
