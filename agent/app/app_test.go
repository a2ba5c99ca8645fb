package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/options"
)

func TestNewFreezer(t *testing.T) {
	hybrid := t.TempDir() // v1 controllers plus cgroup2 at unified/
	for _, f := range []string{"freezer/cgroup.procs", "unified/cgroup.controllers"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(hybrid, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hybrid, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unified := t.TempDir()
	if err := os.WriteFile(filepath.Join(unified, "cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		root    string
		version string
		driver  string
		want    freezer.Freezer
	}{
		{"hybrid auto uses the v1 freezer", hybrid, "auto", "", freezer.Freezer{Version: freezer.V1, Mount: filepath.Join(hybrid, "freezer"), Parent: "lab/n1"}},
		{"hybrid v2 uses unified/", hybrid, "v2", "systemd", freezer.Freezer{Version: freezer.V2, Mount: filepath.Join(hybrid, "unified"), Parent: "lab/n1", Drivers: []freezer.Driver{freezer.DriverSystemd}}},
		{"unified auto", unified, "auto", "", freezer.Freezer{Version: freezer.V2, Mount: unified, Parent: "lab/n1"}},
		{"explicit v1", unified, "v1", "cgroupfs", freezer.Freezer{Version: freezer.V1, Mount: filepath.Join(unified, "freezer"), Parent: "lab/n1", Drivers: []freezer.Driver{freezer.DriverCgroupfs}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options.New()
			o.CgroupRoot, o.CgroupVersion, o.CgroupDriver, o.CgroupParent = tc.root, tc.version, tc.driver, "lab/n1"
			got, err := NewFreezer(o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("freezer (-want +got):\n%s", diff)
			}
		})
	}
	o := options.New()
	o.CgroupRoot = t.TempDir()
	if _, err := NewFreezer(o); err == nil {
		t.Errorf("a root without cgroups was accepted")
	}
}
