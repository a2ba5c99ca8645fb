package labnode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/livemigrate/livemigrate/agent/archive"
	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/agent/freezer"
	"github.com/livemigrate/livemigrate/agent/kubelet"
	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

func TestReadLazyPagesConfig(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		content string
		want    *LazyPages
		err     string
	}{
		"lazy":              {content: "lazy-pages\naddress 10.0.0.1\nport 27000\n", want: &LazyPages{Address: "10.0.0.1", Port: 27000}},
		"flags spelling":    {content: "# post-copy\n--lazy-pages\n--address 10.0.0.1\n--port 27000\n", want: &LazyPages{Address: "10.0.0.1", Port: 27000}},
		"not lazy":          {content: "address 10.0.0.1\nport 27000\n"},
		"no port":           {content: "lazy-pages\naddress 10.0.0.1\n", err: "lazy-pages needs address and port"},
		"port not a number": {content: "lazy-pages\naddress a\nport x\n", err: `port "x"`},
		"unknown option":    {content: "lazy-pages\naddress a\nport 1\ntcp-established\n", err: `option "tcp-established" is not supported`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".conf")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readLazyPagesConfig(p)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got, err := readLazyPagesConfig(filepath.Join(dir, "absent.conf")); got != nil || err != nil {
		t.Fatalf("absent file: %+v, %v; want nothing", got, err)
	}
	p := filepath.Join(dir, "written", "c.conf")
	if err := WriteLazyPagesConfig(p, LazyPages{Address: "127.0.0.1", Port: 4000}); err != nil {
		t.Fatal(err)
	}
	if got, err := readLazyPagesConfig(p); err != nil || got == nil || *got != (LazyPages{Address: "127.0.0.1", Port: 4000}) {
		t.Fatalf("written config reads back as %+v, %v", got, err)
	}
	if err := WriteLazyPagesConfig(p, LazyPages{Address: "127.0.0.1"}); err == nil {
		t.Fatal("a config without a port was written")
	}
}

// TestLazyPagesNeedRunc checks that the memory stand-in refuses a lazy
// checkpoint instead of copying the whole memory under the name of one.
func TestLazyPagesNeedRunc(t *testing.T) {
	needRoot(t)
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	t.Cleanup(func() { removeCgroupTree(parent) })
	src := newRuntime(t, "node-a", parent, Config{SkipAuth: true})
	ctx := context.Background()
	if err := src.RunPod(ctx, labPod("web-0", DefaultLabAppImage, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if err := WriteLazyPagesConfig(src.CRIUConfigPath("db", "web-0", "app"), LazyPages{Address: "127.0.0.1", Port: 1}); err != nil {
		t.Fatal(err)
	}
	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	_, err = kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 60*time.Second)
	if err == nil || !strings.Contains(err.Error(), "lazy pages (post-copy) need the runc runtime") {
		t.Fatalf("lazy checkpoint on the memory stand-in: err = %v", err)
	}
}

// TestRuncPostCopyCheckpointRestore is the node-level post-copy migration:
// the frozen source's container is dumped with lazy pages (its archive
// holds everything but the memory pages) and its page server stays up; the
// target restores it at once with a lazy-pages daemon pointed at that page
// server; the restored counter goes on from the frozen one, the source's
// dump reports the transfer finished, and the source stayed frozen until
// then. With TLS, the page server and the daemon authenticate each other
// with certificates of one CA; a daemon whose certificate is of another CA
// gets no page. A link cut during the transfer ends both ends with an
// error: the restored container is killed (it would run on memory with
// holes) and the source stays frozen, so no copy runs.
func TestRuncPostCopyCheckpointRestore(t *testing.T) {
	needRoot(t)
	criu := criuBinary(t)
	pki := t.TempDir()
	ca := newTestCA(t)
	other := newTestCA(t)
	source := ca.issue(t, pki, "source", "127.0.0.1")
	target := ca.issue(t, pki, "target", "127.0.0.1")
	stranger := other.issue(t, pki, "stranger", "127.0.0.1")
	for _, tc := range []struct {
		name           string
		srcTLS, dstTLS *PageServerTLS
		end            transferEnd
	}{
		{name: "plain", end: complete},
		{name: "mutual TLS", srcTLS: source, dstTLS: target, end: complete},
		{name: "TLS, target of another CA", srcTLS: source, dstTLS: stranger, end: refused},
		{name: "link cut during the transfer", end: linkCut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			postCopy(t, criu, tc.srcTLS, tc.dstTLS, tc.end)
		})
	}
}

// transferEnd is how a test's page transfer is meant to end.
type transferEnd int

const (
	// complete: every page arrives.
	complete transferEnd = iota
	// refused: the source's page server refuses the daemon.
	refused
	// linkCut: the link between them breaks after cutAfter bytes.
	linkCut
)

// cutAfter is where the link breaks: past the start of the transfer, far
// before the end of a 64 MiB memory.
const cutAfter = 8 << 20

func postCopy(t *testing.T, criu string, srcTLS, dstTLS *PageServerTLS, end transferEnd) {
	reg, err := StartRegistry("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	parent := "livemigrate-labnode-test-" + string(uuid.NewUUID())[:8]
	pull := checkpointimage.PushOptions{Insecure: true}
	cfg := Config{SkipAuth: true, Registry: pull, ContainerRuntime: ContainerRuntimeRunc, CRIU: criu}
	t.Cleanup(func() { removeCgroupTree(parent) })
	src := newRuntime(t, "node-a", parent, cfg)
	dst := newRuntime(t, "node-b", parent, cfg)
	// Runs before the temporary directories are removed: a mount left
	// below them (a CRIU stopped halfway mounts the host's cgroup
	// hierarchies in its work directory) must not be walked into.
	t.Cleanup(func() {
		for _, m := range mountsUnder(src.cfg.Root, dst.cfg.Root) {
			t.Errorf("mount %s left behind", m)
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	vol := t.TempDir()
	ctx := context.Background()

	const memory = 64 << 20
	pod := labPod("web-0", DefaultLabAppImage, vol)
	pod.Spec.Containers[0].Args[1] = "--memory=64Mi"
	if err := src.RunPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, src, "web-0", 50)

	f := &freezer.Freezer{Version: freezer.V1, Mount: "/sys/fs/cgroup/freezer", Parent: parent + "/node-a"}
	cg, err := f.PodPath(pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Freeze(ctx, cg); err != nil {
		t.Fatal(err)
	}
	frozenAt := counter(t, src, "web-0")

	lp := LazyPages{Address: "127.0.0.1", Port: freeTCPPort(t), TLS: srcTLS}
	if err := WriteLazyPagesConfig(src.CRIUConfigPath("db", "web-0", "app"), lp); err != nil {
		t.Fatal(err)
	}
	kc, err := kubelet.New(kubelet.Config{CAFile: src.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, src.Addr)
	items, err := kc.Checkpoint(ctx, host, port, "db", "web-0", "app", 60*time.Second)
	if err != nil {
		t.Fatalf("lazy checkpoint: %v", err)
	}
	dump, ok := src.LazyDump("db", "web-0", "app")
	if !ok {
		t.Fatal("no lazy dump recorded for the checkpoint")
	}
	select {
	case <-dump.Done:
		t.Fatalf("the source's page server ended before the target asked for a page: %v", dump.Err)
	default:
	}
	p, err := archive.Resolve(src.CheckpointDir(), items[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(p, archive.DefaultLimits)
	if err != nil {
		t.Fatalf("archive of a lazy checkpoint: %v", err)
	}
	// Everything but the pages: far less than the app's memory.
	if info.Summary.PagesBytes > memory/8 {
		t.Errorf("the lazy archive holds %d bytes of pages for a %d-byte memory", info.Summary.PagesBytes, memory)
	}
	t.Logf("lazy archive: %d bytes of pages, %d in all", info.Summary.PagesBytes, info.SizeBytes)
	if st, _ := f.State(cg); st != freezer.Frozen {
		t.Fatalf("the lazy checkpoint thawed the pod frozen by the agent (state %s)", st)
	}
	ref := checkpointimage.Repository(reg.Host+"/lm", "db", "web-0", "app") + ":mig-1"
	res, err := checkpointimage.PushArchive(ctx, p, info.ContainerName, info.Annotations, ref, pull)
	if err != nil {
		t.Fatal(err)
	}

	vol2 := t.TempDir()
	copyDir(t, vol, vol2)
	restored := labPod("web-0", res.Reference, vol2)
	restored.Spec.Containers[0].Args[1] = "--memory=64Mi"
	lp.TLS = dstTLS
	if end == linkCut {
		lp.Port = cuttingRelay(t, lp.Address, lp.Port, cutAfter)
	}
	if err := WriteLazyPagesConfig(dst.CRIUConfigPath("db", "web-0", "app"), lp); err != nil {
		t.Fatal(err)
	}
	waitTransfer := func(what string, tr *LazyTransfer) error {
		t.Helper()
		select {
		case <-tr.Done:
			return tr.Err
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s did not end within 2m; its log ends: %s", what, readTail(tr.Log, 2048))
		}
		return nil
	}
	sourceStayed := func() {
		t.Helper()
		if st, _ := f.State(cg); st != freezer.Frozen {
			t.Errorf("the source pod is not frozen once its page server ended (state %s)", st)
		}
		if c := counter(t, src, "web-0"); c != frozenAt {
			t.Errorf("the source's counter moved from %d to %d", frozenAt, c)
		}
		if last, _ := labstate.LastLogged(filepath.Join(vol, "counter.log")); last > frozenAt+1 {
			t.Errorf("source volume's log went on to %d after the freeze at %d", last, frozenAt)
		}
	}
	restoreStart := time.Now()
	err = dst.RunPod(ctx, restored)
	switch end {
	case refused:
		// The source's page server refuses the daemon: the dump ends
		// with an error, the source stays frozen.
		if err == nil {
			defer dst.StopPod(restored.UID)
		}
		if derr := waitTransfer("the source's page server", dump); derr == nil {
			t.Fatalf("the source served its pages to a daemon whose certificate is of another CA (restore: %v)", err)
		} else {
			t.Logf("source's page server refused the daemon: %v (restore: %v)", derr, err)
		}
		sourceStayed()
		return
	case linkCut:
		// Both ends fail; the restored container, if the restore got that
		// far, is killed; the source stays frozen.
		if err != nil {
			t.Logf("restore failed when the link broke: %v", err)
		} else {
			defer dst.StopPod(restored.UID)
			daemon, ok := dst.LazyRestore("db", "web-0", "app")
			if !ok {
				t.Fatal("no lazy-pages daemon recorded for the restore")
			}
			if derr := waitTransfer("the target's lazy-pages daemon", daemon); derr == nil {
				t.Fatal("the target's lazy-pages daemon reports success over a link cut after 8 MiB of a 64 MiB memory")
			}
			deadline := time.Now().Add(time.Minute)
			for {
				info, ok := dst.Container("db", "web-0", "app")
				if !ok || info.Exited {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the restored container still runs a minute after its pages stopped coming (pid %d)", info.PID)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if derr := waitTransfer("the source's page server", dump); derr == nil {
			t.Fatal("the source's dump reports success over a link cut after 8 MiB of a 64 MiB memory")
		}
		sourceStayed()
		return
	}
	if err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	defer dst.StopPod(restored.UID)
	t.Logf("restored and running after %v", time.Since(restoreStart))
	daemon, ok := dst.LazyRestore("db", "web-0", "app")
	if !ok {
		t.Fatal("no lazy-pages daemon recorded for the restore")
	}
	// The restored app runs before its pages are all there: its log on
	// the target's volume moves on. (Its memory cannot be read from
	// outside until then: /proc/<pid>/mem fails with EIO on a page that
	// has not arrived.)
	waitLogged(t, filepath.Join(vol2, "counter.log"), frozenAt+5)
	if err := waitTransfer("the target's lazy-pages daemon", daemon); err != nil {
		t.Fatal(err)
	}
	got := waitCounter(t, dst, "web-0", frozenAt+20)
	if err := waitTransfer("the source's page server", dump); err != nil {
		t.Fatal(err)
	}
	if log := readTail(dump.Log, 4096); !strings.Contains(log, "Lazy pages transfer finished successfully") {
		t.Errorf("the source's dump log does not say the transfer finished: %s", log)
	}
	if srcTLS != nil && !strings.Contains(readFile(dump.Log), "tls") {
		t.Errorf("the source's dump log shows no TLS")
	}
	sourceStayed()
	if n := waitCounter(t, dst, "web-0", got+20); n < got+20 {
		t.Errorf("restored counter stuck at %d", n)
	}
	// The restored memory is the frozen one: the log on the target's volume
	// goes on from the frozen value without a gap or a restart from zero.
	logged, err := os.ReadFile(filepath.Join(vol2, "counter.log"))
	if err != nil {
		t.Fatal(err)
	}
	values := strings.Fields(string(logged))
	for i, v := range values {
		if v != strconv.Itoa(i+1) {
			t.Fatalf("target volume's log has %s at line %d: not one run from 1", v, i+1)
		}
	}
	if uint64(len(values)) < frozenAt+20 {
		t.Errorf("restored app's log on the target volume ends at %d, want past %d", len(values), frozenAt+20)
	}
}

// cuttingRelay forwards one connection to host:port and breaks it (both
// directions) once limit bytes came back from there; it returns its port.
func cuttingRelay(t *testing.T, host string, port, limit int) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		in, err := l.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return
		}
		defer out.Close()
		go func() { _, _ = io.Copy(out, in) }()
		_, _ = io.CopyN(in, out, int64(limit))
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// waitLogged waits until a lab app's log reaches atLeast.
func waitLogged(t *testing.T, path string, atLeast uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		last, err := labstate.LastLogged(path)
		if err == nil && last >= atLeast {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reached %d (%v), want %d", path, last, err, atLeast)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// testCA issues certificates for page servers.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "migration CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes the CA, a certificate for ip (client and server) and its
// key into dir, named after name.
func (ca *testCA) issue(t *testing.T, dir, name, ip string) *PageServerTLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := &PageServerTLS{CACert: filepath.Join(dir, name+"-ca.pem"), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
	for p, b := range map[string][]byte{
		out.CACert: ca.pem,
		out.Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		out.Key:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
