package latency

import (
	"strings"
	"testing"
)

// An item is compared with the others after trimming, so spaces around the
// name or the kind neither double a target's weight nor pass as another
// target.
func TestParseNearDuplicatesAfterTrimming(t *testing.T) {
	for _, in := range []string{
		"cluster:a,cluster: a",
		"cluster:a,cluster:a ",
		"cluster:a=2, cluster:a =3",
		"origin:eu,origin:\teu",
		"cluster:a, cluster :a",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseNear(in)
			if err == nil {
				t.Fatalf("ParseNear(%q) = %+v, want an error naming the duplicate", in, got)
			}
			if !strings.Contains(err.Error(), "listed twice") {
				t.Errorf("error %q does not say the target is listed twice", err)
			}
		})
	}
}

func TestParseNearTrimsTheKind(t *testing.T) {
	got, err := ParseNear(" cluster : a = 2 ")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (Target{Kind: TargetCluster, Name: "a", Weight: 2}) {
		t.Errorf("got %+v, want one cluster target a with weight 2", got)
	}
}
