package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartFailsLoudlyWithoutBinaries(t *testing.T) {
	binDir := t.TempDir()
	// One binary present, executable; the others missing.
	if err := os.WriteFile(filepath.Join(binDir, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	labDir := filepath.Join(t.TempDir(), "lab")
	_, err := Start(context.Background(), Options{BinDir: binDir, Dir: labDir})
	if !errors.Is(err, ErrBinaryMissing) {
		t.Fatalf("Start error = %v, want ErrBinaryMissing", err)
	}
	for _, want := range []string{filepath.Join(binDir, "kube-apiserver"), filepath.Join(binDir, "kwok"), "run make lab-binaries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), filepath.Join(binDir, "etcd")+",") {
		t.Errorf("error %q names etcd, which is there", err)
	}
	if _, serr := os.Stat(labDir); !os.IsNotExist(serr) {
		t.Errorf("Start created %s before failing", labDir)
	}
}
