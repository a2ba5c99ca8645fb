package labnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Pagemap entry flags (CRIU's images/pagemap.proto): PE_PRESENT pages are
// in the pages image, PE_PARENT ones in a parent dump, PE_LAZY ones served
// by a page server.
const pePresent = 1 << 2

// CRIUMemory reads length bytes at the virtual address addr of the root
// process of a CRIU dump from its images (checkpoint/ member name → bytes):
// pstree.img names the root, its pagemap-<pid>.img maps addresses to the
// pages in pages-<id>.img. Pages the dump does not hold read as zeros, as
// the restored process would see them.
func CRIUMemory(images map[string][]byte, addr uint64, length int) ([]byte, error) {
	return criuMemory(mapImages(images), addr, length)
}

// CRIUMemoryIn is CRIUMemory on a directory of CRIU images, reading only
// the pages asked for.
func CRIUMemoryIn(dir string, addr uint64, length int) ([]byte, error) {
	return criuMemory(dirImages(dir), addr, length)
}

// imageSet reads CRIU images: small ones whole, pages at an offset.
type imageSet interface {
	read(name string) ([]byte, error)
	readAt(name string, p []byte, off int64) error
}

type mapImages map[string][]byte

func (m mapImages) read(name string) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("no %s", name)
	}
	return b, nil
}

func (m mapImages) readAt(name string, p []byte, off int64) error {
	b, ok := m[name]
	if !ok {
		return fmt.Errorf("no %s", name)
	}
	if off < 0 || off+int64(len(p)) > int64(len(b)) {
		return fmt.Errorf("%s: %d bytes at %d run past its %d", name, len(p), off, len(b))
	}
	copy(p, b[off:])
	return nil
}

type dirImages string

func (d dirImages) read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d dirImages) readAt(name string, p []byte, off int64) error {
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	return err
}

func criuMemory(images imageSet, addr uint64, length int) ([]byte, error) {
	treeImg, err := images.read("pstree.img")
	if err != nil {
		return nil, err
	}
	tree, err := decodeImage(treeImg)
	if err != nil || len(tree) == 0 {
		return nil, fmt.Errorf("pstree.img: %v", err)
	}
	var root pstree.PstreeEntry
	if err := proto.Unmarshal(tree[0], &root); err != nil {
		return nil, fmt.Errorf("pstree.img: %w", err)
	}
	pid := root.GetPid()
	pmImg, err := images.read(fmt.Sprintf("pagemap-%d.img", pid))
	if err != nil {
		return nil, err
	}
	pm, err := decodeImage(pmImg)
	if err != nil || len(pm) < 1 {
		return nil, fmt.Errorf("pagemap-%d.img: %v", pid, err)
	}
	var head pagemap.PagemapHead
	if err := proto.Unmarshal(pm[0], &head); err != nil {
		return nil, fmt.Errorf("pagemap-%d.img: %w", pid, err)
	}
	pagesID := head.GetPagesId()
	pages := fmt.Sprintf("pages-%d.img", pagesID)
	out := make([]byte, length)
	end := addr + uint64(length)
	var off uint64
	const page = 4096
	for _, raw := range pm[1:] {
		pe, err := parsePagemapEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("pagemap-%d.img: %w", pid, err)
		}
		if pe.inParent || pe.flags != 0 && pe.flags&pePresent == 0 {
			continue
		}
		start, n := pe.vaddr, pe.nrPages
		stop := start + n*page
		if lo, hi := max(start, addr), min(stop, end); lo < hi {
			if err := images.readAt(pages, out[lo-addr:hi-addr], int64(off+(lo-start))); err != nil {
				return nil, fmt.Errorf("pagemap-%d.img: %w", pid, err)
			}
		}
		off += n * page
	}
	return out, nil
}

// decodeImage splits a CRIU protobuf image into its entries' messages: its
// magic (after the common or service magic), then entries of a 32-bit
// little-endian size and a message.
func decodeImage(b []byte) ([][]byte, error) {
	if len(b) < 8 {
		return nil, errors.New("no image")
	}
	off := 4
	if m := binary.LittleEndian.Uint32(b); m == 0x54564319 || m == 0x55105940 {
		off = 8
	}
	var out [][]byte
	for off < len(b) {
		if off+4 > len(b) {
			return nil, io.ErrUnexpectedEOF
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off {
			return nil, io.ErrUnexpectedEOF
		}
		out = append(out, b[off:off+n])
		off += n
	}
	return out, nil
}

// pagemapEntry is CRIU's pagemap_entry. CRIU 4 moved the page count to the
// 64-bit field 5 (nr_pages) and keeps field 2 (compat_nr_pages) zero for
// large runs; go-criu's generated type only knows field 2, so the fields are
// read here.
type pagemapEntry struct {
	vaddr, nrPages uint64
	inParent       bool
	flags          uint64
}

func parsePagemapEntry(b []byte) (pagemapEntry, error) {
	var pe pagemapEntry
	var compat uint64
	seen5 := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return pe, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return pe, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return pe, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			pe.vaddr = v
		case 2:
			compat = v
		case 3:
			pe.inParent = v != 0
		case 4:
			pe.flags = v
		case 5:
			pe.nrPages, seen5 = v, true
		}
	}
	if !seen5 {
		pe.nrPages = compat
	}
	return pe, nil
}
