package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/livemigrate/livemigrate/test/lab/relay"
)

func TestOptionsComplete(t *testing.T) {
	small := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	tests := []struct {
		name      string
		opts      Options
		wantNames []string
		wantNodes []int
		wantErr   bool
	}{
		{name: "defaults", opts: Options{}, wantNames: []string{"member1", "member2"}, wantNodes: []int{2, 2}},
		{name: "counts", opts: Options{Members: 3, NodesPerMember: 4}, wantNames: []string{"member1", "member2", "member3"}, wantNodes: []int{4, 4, 4}},
		{name: "explicit members", opts: Options{Members: 5, MemberSpecs: []MemberSpec{{Name: "a", Nodes: 1}, {Name: "b", Nodes: 3}}}, wantNames: []string{"a", "b"}, wantNodes: []int{1, 3}},
		{name: "duplicate member", opts: Options{MemberSpecs: []MemberSpec{{Name: "a", Nodes: 1}, {Name: "a", Nodes: 1}}}, wantErr: true},
		{name: "no nodes", opts: Options{MemberSpecs: []MemberSpec{{Name: "a"}}}, wantErr: true},
		{name: "negative delay", opts: Options{MemberSpecs: []MemberSpec{{Name: "a", Nodes: 1, Position: NetworkPosition{Delay: metav1.Duration{Duration: -time.Second}}}}}, wantErr: true},
		{name: "unknown component", opts: Options{Components: []string{"nope"}}, wantErr: true},
		{name: "origin near no member", opts: Options{Origins: []OriginSpec{{Name: "users", Near: "nowhere"}}}, wantErr: true},
		{name: "origin named like a member", opts: Options{Origins: []OriginSpec{{Name: "member1"}}}, wantErr: true},
		{name: "capacity without pods", opts: Options{NodeCapacity: small}, wantNames: []string{"member1", "member2"}, wantNodes: []int{2, 2}},
		{name: "WAN data path with two members", opts: Options{WANDataPath: true}, wantNames: []string{"member1", "member2"}, wantNodes: []int{2, 2}},
		{name: "WAN data path with three members", opts: Options{Members: 3, WANDataPath: true}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opts.complete()
			if (err != nil) != tc.wantErr {
				t.Fatalf("complete() error = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var names []string
			var nodes []int
			for _, m := range got.MemberSpecs {
				names = append(names, m.Name)
				nodes = append(nodes, m.Nodes)
				if _, ok := m.NodeCapacity[corev1.ResourcePods]; !ok {
					t.Errorf("member %s has no pods capacity", m.Name)
				}
			}
			if diff := cmp.Diff(tc.wantNames, names); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantNodes, nodes); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			if got.StartTimeout.Duration == 0 {
				t.Error("no start timeout")
			}
		})
	}
}

func TestDefaultOptionsDiffer(t *testing.T) {
	o, err := DefaultOptions().complete()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.MemberSpecs) != 3 {
		t.Fatalf("default lab has %d members, want 3", len(o.MemberSpecs))
	}
	seenDelay := map[time.Duration]bool{}
	seenCPU := map[int64]bool{}
	for _, m := range o.MemberSpecs {
		seenDelay[m.Position.Delay.Duration] = true
		cpu := m.NodeCapacity.Cpu().MilliValue() * int64(m.Nodes)
		seenCPU[cpu] = true
	}
	if len(seenDelay) != 3 || len(seenCPU) != 3 {
		t.Errorf("default members should differ in network distance and capacity: delays %v, CPU %v", seenDelay, seenCPU)
	}
}

func TestLinkOf(t *testing.T) {
	pos := func(ms int, bw int64) NetworkPosition {
		return NetworkPosition{Delay: metav1.Duration{Duration: time.Duration(ms) * time.Millisecond}, BytesPerSecond: bw}
	}
	m1 := hop{name: "member1", pos: pos(2, 100)}
	m3 := hop{name: "member3", pos: pos(40, 20)}
	users := hop{name: "users", pos: pos(1, 0)}
	tests := []struct {
		name string
		a, b []hop
		want relay.Link
	}{
		{name: "members: delays add, smaller cap wins", a: []hop{m1}, b: []hop{m3}, want: relay.Link{Delay: 42 * time.Millisecond, BytesPerSecond: 20}},
		{name: "one side unlimited", a: []hop{{name: "a", pos: pos(5, 0)}}, b: []hop{{name: "b", pos: pos(5, 50)}}, want: relay.Link{Delay: 10 * time.Millisecond, BytesPerSecond: 50}},
		{name: "both unlimited", a: []hop{{name: "a", pos: pos(0, 0)}}, b: []hop{{name: "b", pos: pos(1, 0)}}, want: relay.Link{Delay: time.Millisecond}},
		{name: "origin at the member's own site", a: []hop{m1}, b: []hop{users, m1}, want: relay.Link{Delay: time.Millisecond}},
		{name: "origin at another member's site", a: []hop{m3}, b: []hop{users, m1}, want: relay.Link{Delay: 43 * time.Millisecond, BytesPerSecond: 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, linkOf(tc.a, tc.b)); diff != "" {
				t.Errorf("linkOf (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, linkOf(tc.b, tc.a)); diff != "" {
				t.Errorf("linkOf reversed (-want +got):\n%s", diff)
			}
		})
	}
}

// The node runtime is runc (real CRIU) unless the stand-in is asked for,
// by the option or the environment; anything else is refused with the
// names to write.
func TestNodeRuntimeDefault(t *testing.T) {
	for _, tc := range []struct {
		name, opt, env, want, wantErr string
	}{
		{name: "default", want: NodeRuntimeRunc},
		{name: "environment", env: NodeRuntimeProcess, want: NodeRuntimeProcess},
		{name: "option over environment", opt: NodeRuntimeRunc, env: NodeRuntimeProcess, want: NodeRuntimeRunc},
		{name: "unknown", opt: "crio", wantErr: `nodeRuntime "crio": write "runc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(NodeRuntimeEnv, tc.env)
			got, err := Options{NodeRuntime: tc.opt}.complete()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("complete() error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NodeRuntime != tc.want {
				t.Errorf("NodeRuntime = %q, want %q", got.NodeRuntime, tc.want)
			}
		})
	}
}

// A criu whose check fails stops the lab with what criu said and how to
// run the stand-in instead.
func TestCheckCRIUFails(t *testing.T) {
	criu := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(criu, []byte("#!/bin/sh\necho \"Error (criu/cr-check.c:1): kerndat_vdso_fill_symtable failed\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := checkCRIU(criu)
	if err == nil {
		t.Fatal("checkCRIU of a failing criu check: no error")
	}
	for _, want := range []string{"kerndat_vdso_fill_symtable failed", "CRIU does not work on this machine", NodeRuntimeEnv + "=" + NodeRuntimeProcess} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	ok := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(ok, []byte("#!/bin/sh\n[ \"$CRIU_FAULT\" = 130 ] || { echo no CRIU_FAULT >&2; exit 1; }\necho Looks good.\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkCRIU(ok); err != nil {
		t.Errorf("checkCRIU of a working criu: %v", err)
	}
}
