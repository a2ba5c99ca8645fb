package archive

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"google.golang.org/protobuf/proto"

	"github.com/livemigrate/livemigrate/agent/archive/layout"
)

// criuImage encodes messages as a CRIU image (common magic, image magic,
// size-prefixed entries).
func criuImage(t *testing.T, magic uint32, msgs ...proto.Message) []byte {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, imgCommonMagic)
	b = binary.LittleEndian.AppendUint32(b, magic)
	for _, m := range msgs {
		p, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// criuArchive writes an archive whose metadata names no CRIU version,
// kernel or architecture (as CRI-O's), with a dump.log and the given
// process tree images.
func criuArchive(t *testing.T, images map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "images")
	if err := os.MkdirAll(img, 0o700); err != nil {
		t.Fatal(err)
	}
	for n, b := range images {
		if err := os.WriteFile(filepath.Join(img, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := testContainer
	c.CRIUVersion, c.Kernel, c.Architecture = "", "", ""
	p := filepath.Join(dir, layout.ArchiveName("web-0", "db", "app", c.CheckpointedAt))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	entries := []layout.Entry{}
	for n, b := range images {
		b := b
		entries = append(entries, layout.Entry{Name: n, Size: int64(len(b)), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }})
	}
	if err := layout.WriteEntriesWith(f, c, entries, map[string][]byte{
		"dump.log": []byte("(00.000000) CRIU run id = 1\n(00.000032) Version: 4.2.1 (gitid 0)\n(00.000040) Running on vm Linux 6.18.44-fc-v1300 #1 SMP PREEMPT_DYNAMIC @0 x86_64\n"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectReadsCRIUImagesAndDumpLog(t *testing.T) {
	const pstreeMagic, coreMagic = 0x50273030, 0x55053847
	one, two := uint32(1), uint32(2)
	zero := uint32(0)
	p := criuArchive(t, map[string][]byte{
		"pstree.img":  criuImage(t, pstreeMagic, &pstree.PstreeEntry{Pid: &one, Ppid: &zero, Pgid: &one, Sid: &one}, &pstree.PstreeEntry{Pid: &two, Ppid: &one, Pgid: &one, Sid: &one}),
		"core-1.img":  criuImage(t, coreMagic, &criucore.CoreEntry{Mtype: criucore.CoreEntry_X86_64.Enum(), Tc: &criucore.TaskCoreEntry{Comm: proto.String("labapp"), TaskState: proto.Uint32(1), ExitCode: proto.Uint32(0), Personality: proto.Uint32(0), Flags: proto.Uint32(0), BlkSigset: proto.Uint64(0)}}),
		"pages-1.img": make([]byte, 8192),
	})
	info, err := Inspect(p, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if info.CRIUVersion != "4.2.1" || info.Kernel != "6.18.44-fc-v1300" || info.Architecture != "amd64" {
		t.Errorf("from dump.log: CRIU %q, kernel %q, architecture %q", info.CRIUVersion, info.Kernel, info.Architecture)
	}
	if info.Processes != 2 || info.Command != "labapp" {
		t.Errorf("process tree: %d processes, root %q; want 2, labapp", info.Processes, info.Command)
	}
	if info.Summary.PagesBytes != 8192 {
		t.Errorf("pages %d bytes, want 8192", info.Summary.PagesBytes)
	}
}

func TestInspectRejectsBadProcessTree(t *testing.T) {
	const pstreeMagic = 0x50273030
	one, nine := uint32(1), uint32(9)
	for name, images := range map[string]map[string][]byte{
		"unknown parent": {"pstree.img": criuImage(t, pstreeMagic, &pstree.PstreeEntry{Pid: &one, Ppid: &nine, Pgid: &one, Sid: &one})},
		"no root core":   {"pstree.img": criuImage(t, pstreeMagic, &pstree.PstreeEntry{Pid: &one, Ppid: proto.Uint32(0), Pgid: &one, Sid: &one})},
		"truncated":      {"pstree.img": criuImage(t, pstreeMagic, &pstree.PstreeEntry{Pid: &one, Ppid: proto.Uint32(0), Pgid: &one, Sid: &one})[:11]},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Inspect(criuArchive(t, images), DefaultLimits)
			if !IsRejected(err) {
				t.Fatalf("Inspect: %v, want a rejection", err)
			}
		})
	}
}
