package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
)

var testContainer = layout.Container{
	ID: "abc123", Name: "app", PodName: "web-0", PodNamespace: "db", PodUID: "uid-1",
	Image: "livemigrate.io/labapp:latest", ImageRef: "sha256:feed", Runtime: "runc", RuntimeVersion: "1.2.3",
	CRIUVersion: "4.1", Architecture: "amd64", Kernel: "6.18.0",
	CheckpointedAt: time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC), FrozenTime: 1500 * time.Microsecond, PagesWritten: 4096,
}

// validArchive writes a CRI-O layout archive with a pages image.
func validArchive(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "pages-1.img"), bytes.Repeat([]byte{7}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "inventory.img"), []byte("inv"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, layout.ArchiveName("web-0", "db", "app", testContainer.CheckpointedAt))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := layout.Write(f, testContainer, images); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectValidArchive(t *testing.T) {
	p := validArchive(t)
	info, err := Inspect(p, DefaultLimits)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	fi, _ := os.Stat(p)
	want := &Info{
		ContainerName: "app", PodName: "web-0", PodNamespace: "db",
		Image: "livemigrate.io/labapp:latest", ImageRef: "sha256:feed", Engine: "CRI-O",
		Runtime: "runc", RuntimeVersion: "1.2.3", CRIUVersion: "4.1", Architecture: "amd64", Kernel: "6.18.0",
		CheckpointedAt: testContainer.CheckpointedAt, SizeBytes: fi.Size(),
		FrozenTime: 1500 * time.Microsecond, PagesWritten: 4096,
		Annotations: map[string]string{
			"org.criu.checkpoint.container.name":  "app",
			"org.criu.checkpoint.pod.name":        "web-0",
			"org.criu.checkpoint.pod.namespace":   "db",
			"org.criu.checkpoint.engine.name":     "CRI-O",
			"org.criu.checkpoint.rootfsImageName": "livemigrate.io/labapp:latest",
			"org.criu.checkpoint.rootfsImageID":   "sha256:feed",
			"org.criu.checkpoint.runtime.name":    "runc",
			"org.criu.checkpoint.runtime.version": "1.2.3",
			"org.criu.checkpoint.criu.version":    "4.1",
			"org.criu.checkpoint.host.arch":       "amd64",
			"org.criu.checkpoint.host.kernel":     "6.18.0",
		},
	}
	if diff := cmp.Diff(want, info, cmpopts.IgnoreFields(Info{}, "Summary")); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
	if info.Summary.PagesBytes != 8192 || info.Summary.CheckpointBytes != 8192+3 {
		t.Errorf("summary sizes = pages %d checkpoint %d", info.Summary.PagesBytes, info.Summary.CheckpointBytes)
	}
}

type member struct {
	name string
	typ  byte
	link string
	mode int64
	body []byte
}

func craft(t testing.TB, extra []member, withMeta bool) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(m member) {
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Linkname: m.link, Mode: 0o600, Size: int64(len(m.body))}
		if m.mode != 0 {
			h.Mode = m.mode
		}
		if m.typ == tar.TypeDir || m.typ == tar.TypeSymlink || m.typ == tar.TypeLink || m.typ == tar.TypeChar || m.typ == tar.TypeBlock || m.typ == tar.TypeFifo {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if withMeta {
		files, err := layout.MetadataFiles(testContainer)
		if err != nil {
			t.Fatal(err)
		}
		write(member{name: "checkpoint/", typ: tar.TypeDir})
		write(member{name: "checkpoint/pages-1.img", typ: tar.TypeReg, body: []byte("pages")})
		for _, k := range []string{"config.dump", "spec.dump", "stats-dump"} {
			write(member{name: k, typ: tar.TypeReg, body: files[k]})
		}
	}
	for _, m := range extra {
		write(m)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "checkpoint-x_y-z-2026.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateRejectsMalicious(t *testing.T) {
	small := Limits{MaxMemberBytes: 64 << 10, MaxTotalBytes: 128 << 10, MaxEntries: 20}
	big := bytes.Repeat([]byte{1}, 65<<10)
	cases := []struct {
		name     string
		extra    []member
		noMeta   bool
		lim      Limits
		wantText string // substring of the rejection
	}{
		{name: "absolute path", extra: []member{{name: "/etc/passwd", typ: tar.TypeReg, body: []byte("x")}}, wantText: "absolute path"},
		{name: "traversal", extra: []member{{name: "checkpoint/../../etc/cron.d/x", typ: tar.TypeReg, body: []byte("x")}}, wantText: "path traversal"},
		{name: "leading dotdot", extra: []member{{name: "../x", typ: tar.TypeReg, body: []byte("x")}}, wantText: "path traversal"},
		{name: "symlink absolute", extra: []member{{name: "checkpoint/root", typ: tar.TypeSymlink, link: "/"}}, wantText: "leaves the archive"},
		{name: "symlink escaping", extra: []member{{name: "checkpoint/up", typ: tar.TypeSymlink, link: "../../etc"}}, wantText: "leaves the archive"},
		{name: "hard link escaping", extra: []member{{name: "x", typ: tar.TypeLink, link: "../../etc/shadow"}}, wantText: "leaves the archive"},
		{name: "hard link absolute", extra: []member{{name: "x", typ: tar.TypeLink, link: "/etc/shadow"}}, wantText: "leaves the archive"},
		{name: "hard link to later member", extra: []member{{name: "x", typ: tar.TypeLink, link: "checkpoint/nothere"}}, wantText: "earlier regular file"},
		{name: "char device", extra: []member{{name: "checkpoint/mem", typ: tar.TypeChar}}, wantText: "device file"},
		{name: "block device", extra: []member{{name: "checkpoint/sda", typ: tar.TypeBlock}}, wantText: "device file"},
		{name: "fifo", extra: []member{{name: "checkpoint/fifo", typ: tar.TypeFifo}}, wantText: "FIFO"},
		{name: "setuid", extra: []member{{name: "checkpoint/sh", typ: tar.TypeReg, mode: 0o4755, body: []byte("x")}}, wantText: "setuid"},
		{name: "oversize member", extra: []member{{name: "checkpoint/pages-2.img", typ: tar.TypeReg, body: big}}, lim: small, wantText: "member limit"},
		{name: "oversize total", extra: []member{
			{name: "checkpoint/pages-2.img", typ: tar.TypeReg, body: big[:60<<10]},
			{name: "checkpoint/pages-3.img", typ: tar.TypeReg, body: big[:60<<10]},
			{name: "checkpoint/pages-4.img", typ: tar.TypeReg, body: big[:60<<10]},
		}, lim: small, wantText: "total size limit"},
		{name: "too many members", extra: func() []member {
			var ms []member
			for i := 0; i < 30; i++ {
				ms = append(ms, member{name: "checkpoint/f" + string(rune('a'+i)), typ: tar.TypeReg, body: []byte("x")})
			}
			return ms
		}(), lim: small, wantText: "more than 20 members"},
		{name: "duplicate member overriding metadata", extra: []member{{name: "config.dump", typ: tar.TypeReg, body: []byte("{}")}}, wantText: "duplicate"},
		{name: "missing metadata", noMeta: true, extra: []member{{name: "checkpoint/pages-1.img", typ: tar.TypeReg, body: []byte("x")}}, wantText: "missing config.dump"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := craft(t, tc.extra, !tc.noMeta)
			lim := tc.lim
			if lim == (Limits{}) {
				lim = DefaultLimits
			}
			_, err := Inspect(p, lim)
			if !IsRejected(err) {
				t.Fatalf("Inspect accepted a malicious archive (err %v)", err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("rejection %q does not say %q", err, tc.wantText)
			}
		})
	}
}

func TestValidateAcceptsLinksInside(t *testing.T) {
	p := craft(t, []member{
		{name: "checkpoint/latest", typ: tar.TypeSymlink, link: "pages-1.img"},
		{name: "checkpoint/copy", typ: tar.TypeLink, link: "checkpoint/pages-1.img"},
	}, true)
	if _, err := Validate(p, DefaultLimits); err != nil {
		t.Fatalf("Validate refused links inside the tree: %v", err)
	}
}

func TestValidateRejectsCorruptAndSymlinkArchive(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.tar")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a tar", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(junk, DefaultLimits); !IsRejected(err) {
		t.Errorf("corrupt tar: got %v, want rejection", err)
	}
	link := filepath.Join(dir, "link.tar")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(link, DefaultLimits); !IsRejected(err) {
		t.Errorf("archive path to a device: got %v, want rejection", err)
	}
}

func TestInspectRejectsBadStats(t *testing.T) {
	files, _ := layout.MetadataFiles(testContainer)
	st := append([]byte(nil), files["stats-dump"]...)
	st[8] = 0xff // payload size beyond the file
	st[9] = 0xff
	p := craft(t, nil, false)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		n string
		b []byte
	}{{"checkpoint/pages-1.img", []byte("x")}, {"config.dump", files["config.dump"]}, {"spec.dump", files["spec.dump"]}, {"stats-dump", st}} {
		_ = tw.WriteHeader(&tar.Header{Name: m.n, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(m.b))})
		_, _ = tw.Write(m.b)
	}
	_ = tw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(p, DefaultLimits); !IsRejected(err) {
		t.Fatalf("stats-dump with a lying size: got %v, want rejection", err)
	}
}

func TestResolveSecureRemove(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		reported string
		want     string
		wantErr  bool
	}{
		{"/var/lib/kubelet/checkpoints/checkpoint-web-0_db-app-2026-11-25T07:00:00Z.tar", filepath.Join(dir, "checkpoint-web-0_db-app-2026-11-25T07:00:00Z.tar"), false},
		{"/etc/shadow", "", true},
		{"/var/lib/kubelet/checkpoints/..", "", true},
		{"checkpoint-x.tar/..", "", true},
	}
	for _, tc := range cases {
		got, err := Resolve(dir, tc.reported)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q, err %v", tc.reported, got, err, tc.want, tc.wantErr)
		}
	}
	p := filepath.Join(dir, "checkpoint-a_b-c-d.tar")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Secure(p); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("modes after Secure: file %v dir %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	if err := Remove(t.TempDir(), p); err == nil {
		t.Errorf("Remove deleted a file outside its directory")
	}
	if err := Remove(dir, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("archive still there after Remove")
	}
	if err := Remove(dir, p); err != nil {
		t.Errorf("Remove is not idempotent: %v", err)
	}
}
