package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
)

// replicationObj is a VolumeReplication of migration mig for claim.
func replicationObj(name, mig, claim string, role agentv1alpha1.ReplicationRole, node, peer string) *agentv1alpha1.VolumeReplication {
	vr := vrObj(name, role, node, peer)
	vr.Spec.MigrationUID, vr.Spec.ClaimName = mig, claim
	vr.Spec.TLSSecretRef.Name = "tls-" + mig
	return vr
}

func migrationSecret(t *testing.T, mig string) (*corev1.Secret, *certs.Bundle) {
	t.Helper()
	b, err := certs.Mint(certs.Options{MigrationUID: mig, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return credentials("tls-"+mig, mig, b), b
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func reconcileCtx(t *testing.T, c *cluster, name string) ctrl.Result {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	res, err := c.rec.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	if err != nil {
		t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

// TestManyReplicationsThroughOneListener: 40 volumes of 4 migrations
// arrive on one node whose agent has a single replication port (as in the
// lab, and as a node past its old 30-port range). Every receiver starts on
// that port, and all 40 replications, run concurrently by one source agent
// with real rsync over real mutual TLS, complete and verify.
func TestManyReplicationsThroughOneListener(t *testing.T) {
	testharness.RequireRoot(t)
	rejectedConns := since(t, rejected)
	const migrations, perMigration = 4, 10
	base := t.TempDir()
	dstRoot := filepath.Join(base, "member2", "volumes")
	port := freePort(t)
	var srcObjs, dstObjs []client.Object
	type volume struct{ name, src, dst string }
	var vols []volume
	for m := range migrations {
		mig := fmt.Sprintf("mig-%d", m)
		sec, _ := migrationSecret(t, mig)
		srcObjs = append(srcObjs, sec.DeepCopy())
		dstObjs = append(dstObjs, sec)
		for i := range perMigration {
			claim := fmt.Sprintf("data-db-%d", i)
			name := fmt.Sprintf("%s-%s", mig, claim)
			// Claims of the same name in the source and target, one
			// namespace per cluster: the migrations of this test share
			// the namespace, so their claims get distinct names.
			claim = fmt.Sprintf("%s-%s", claim, mig)
			v := volume{name: name, src: filepath.Join(base, "member1", "disks", name), dst: filepath.Join(dstRoot, "db", "pv-"+name)}
			writeFile(t, filepath.Join(v.src, "table"), 64<<10+i*1024)
			writeFile(t, filepath.Join(v.src, "wal", "0001"), 8<<10)
			spvc, spv := localClaim(claim, "pv-src-"+name, v.src, srcNode, nil)
			dpvc, dpv := localClaim(claim, "pv-"+name, v.dst, dstNode, map[string]string{provision.LabelMigrationUID: mig})
			srcObjs = append(srcObjs, spvc, spv)
			dstObjs = append(dstObjs, dpvc, dpv, replicationObj(name, mig, claim, agentv1alpha1.ReplicationRoleTarget, dstNode, ""))
			vols = append(vols, v)
		}
	}
	dst := newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1", Port: port}, dstObjs...)
	endpoints := map[string]bool{}
	for _, v := range vols {
		dst.reconcile(t, v.name)
		tv := dst.waitPhase(t, v.name, agentv1alpha1.VolumeReplicationListening)
		endpoints[tv.Status.Endpoint] = true
		if tv.Status.ServerName != RouteServerName(tv.Spec.MigrationUID, tv.Spec.ClaimName) {
			t.Errorf("%s: serverName %q, want the route of its migration and claim", v.name, tv.Status.ServerName)
		}
		// The source is created from the target's status, as the
		// migration's controller does.
		srcObjs = append(srcObjs, replicationObj(v.name, tv.Spec.MigrationUID, tv.Spec.ClaimName, agentv1alpha1.ReplicationRoleSource, srcNode, tv.Status.Endpoint))
	}
	if want := "127.0.0.1:" + strconv.Itoa(port); len(endpoints) != 1 || !endpoints[want] {
		t.Fatalf("endpoints %v, want all on the one port %s", endpoints, want)
	}

	src := newCluster(t, srcNode, Config{}, srcObjs...)
	for _, v := range vols {
		src.reconcile(t, v.name)
	}
	for _, v := range vols {
		src.waitPhaseWithin(t, v.name, agentv1alpha1.VolumeReplicationPreCopied, 5*time.Minute)
	}
	// Frozen: the last writes, then the final pass of every volume at once.
	for _, v := range vols {
		writeFile(t, filepath.Join(v.src, "wal", "0002"), 4<<10)
		vr := src.get(t, v.name)
		vr.Spec.Stage = agentv1alpha1.ReplicationStageFinal
		if err := src.client.Update(context.Background(), vr); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vols {
		src.reconcile(t, v.name)
	}
	for _, v := range vols {
		done := src.waitPhaseWithin(t, v.name, agentv1alpha1.VolumeReplicationCompleted, 5*time.Minute)
		if done.Status.Checksum != agentv1alpha1.ChecksumMatch {
			t.Errorf("%s: checksum %q, want Match", v.name, done.Status.Checksum)
		}
		if d, err := treediff.Compare(v.src, v.dst, treediff.Options{}); err != nil || len(d) != 0 {
			t.Errorf("%s: target differs: %v %v", v.name, d, err)
		}
	}
	if got := rejectedConns(); got != 0 {
		t.Errorf("%v connections rejected, want none", got)
	}
}

func (c *cluster) waitPhaseWithin(t *testing.T, name string, want agentv1alpha1.VolumeReplicationPhase, d time.Duration) *agentv1alpha1.VolumeReplication {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		vr := c.get(t, name)
		if vr.Status.Phase == want {
			return vr
		}
		if vr.Status.Phase == agentv1alpha1.VolumeReplicationFailed {
			t.Fatalf("%s failed: %s", name, vr.Status.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: phase %q, want %q (message %q)", name, vr.Status.Phase, want, vr.Status.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSharedListenerRefusesForeignConnections: on the shared port, a
// connection with another migration's certificate, or naming no receiver,
// is refused before any data reaches a volume, and counted.
func TestSharedListenerRefusesForeignConnections(t *testing.T) {
	testharness.RequireRoot(t)
	rejectedConns := since(t, rejected)
	base := t.TempDir()
	dstRoot := filepath.Join(base, "volumes")
	secA, _ := migrationSecret(t, "mig-a")
	_, bundleB := migrationSecret(t, "mig-b")
	pvc, pv := localClaim("data-a", "pv-a", filepath.Join(dstRoot, "db", "pv-a"), dstNode, map[string]string{provision.LabelMigrationUID: "mig-a"})
	dst := newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1"},
		secA, pvc, pv, replicationObj("a", "mig-a", "data-a", agentv1alpha1.ReplicationRoleTarget, dstNode, ""))
	dst.reconcile(t, "a")
	tv := dst.waitPhase(t, "a", agentv1alpha1.VolumeReplicationListening)

	clientOf := func(b *certs.Bundle, mig, serverName string) *tls.Config {
		cfg, err := certs.TLSConfig(b.Credentials(certs.RoleSource), certs.RoleSource, mig, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = serverName
		// The client trusts any server, so that the verdict is the
		// receiver's.
		cfg.VerifyPeerCertificate = nil
		return cfg
	}
	tests := []struct {
		name   string
		client *tls.Config
	}{
		{name: "another migration's certificate", client: clientOf(bundleB, "mig-b", tv.Status.ServerName)},
		{name: "unknown server name", client: clientOf(bundleB, "mig-b", RouteServerName("mig-b", "data-a"))},
		{name: "no server name", client: clientOf(bundleB, "mig-b", "")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := transport.Dial(context.Background(), tv.Status.Endpoint, tt.client)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.WriteString(c, "RSYNCD: 31.0\n")
				b, rerr := io.ReadAll(c)
				c.Close()
				if rerr == nil && len(b) > 0 {
					t.Fatalf("the receiver answered %q, want the connection refused", b)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for rejectedConns() != float64(i+1) {
				if time.Now().After(deadline) {
					t.Fatalf("rejected connections = %v, want %d", rejectedConns(), i+1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(dstRoot, "db", "pv-a")); len(entries) != 0 {
		t.Errorf("a refused connection wrote %d entries into the volume", len(entries))
	}
}

// TestReceiverThatCannotStartReportsIt: a receiver whose port is taken
// says so in its ReceiverReady condition at once (with what to do), is
// retried, and fails the replication once the cause outlasts the retry
// timeout; a terminal cause (a broken Secret) fails it at once.
func TestReceiverThatCannotStartReportsIt(t *testing.T) {
	testharness.RequireRoot(t)
	portUnavailable := since(t, startFailures.WithLabelValues(roleTarget, string(ReasonPortUnavailable)))
	base := t.TempDir()
	dstRoot := filepath.Join(base, "volumes")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	sec, _ := migrationSecret(t, "mig-a")
	pvc, pv := localClaim("data-a", "pv-a", filepath.Join(dstRoot, "db", "pv-a"), dstNode, map[string]string{provision.LabelMigrationUID: "mig-a"})
	dst := newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1", Port: port, StartRetryTimeout: time.Minute},
		sec, pvc, pv, replicationObj("a", "mig-a", "data-a", agentv1alpha1.ReplicationRoleTarget, dstNode, ""))
	rec := events.NewFakeRecorder(10)
	dst.rec.Recorder = rec

	res := reconcileCtx(t, dst, "a")
	if res.RequeueAfter <= 0 {
		t.Errorf("RequeueAfter = %v, want a retry of the transient failure", res.RequeueAfter)
	}
	vr := dst.get(t, "a")
	c := findCondition(vr.Status.Conditions, agentv1alpha1.ConditionReceiverReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(ReasonPortUnavailable) ||
		!strings.Contains(c.Message, "address already in use") || !strings.Contains(c.Message, "--replication-port") {
		t.Fatalf("ReceiverReady = %+v, want False/PortUnavailable saying what is wrong and what to do", c)
	}
	if vr.Status.Phase != agentv1alpha1.VolumeReplicationPending || !strings.Contains(vr.Status.Message, "retrying") {
		t.Errorf("phase %q message %q, want Pending and retrying", vr.Status.Phase, vr.Status.Message)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, ReasonNotStarted) {
			t.Errorf("event %q, want %s", e, ReasonNotStarted)
		}
	default:
		t.Error("no event for the receiver that cannot start")
	}

	// Still failing after the retry timeout: Failed, with the reason.
	dst.rec.Clock.(*clocktesting.FakeClock).Step(2 * time.Minute)
	if res := reconcileCtx(t, dst, "a"); res.RequeueAfter != 0 {
		t.Errorf("RequeueAfter = %v after giving up, want 0", res.RequeueAfter)
	}
	vr = dst.get(t, "a")
	if vr.Status.Phase != agentv1alpha1.VolumeReplicationFailed || !strings.Contains(vr.Status.Message, "--replication-port") ||
		!strings.Contains(vr.Status.Message, "still failing after 2m") {
		t.Errorf("phase %q message %q, want Failed saying why and for how long", vr.Status.Phase, vr.Status.Message)
	}
	if got := portUnavailable(); got != 2 {
		t.Errorf("start failures = %v, want 2", got)
	}

	// A Secret without the target's key: terminal, Failed at once.
	bad := sec.DeepCopy()
	bad.Name, bad.ResourceVersion = "tls-mig-b", ""
	bad.Labels[certs.LabelMigrationUID] = "mig-b"
	delete(bad.Data, certs.SecretKeyTargetKey)
	pvcB, pvB := localClaim("data-b", "pv-b", filepath.Join(dstRoot, "db", "pv-b"), dstNode, map[string]string{provision.LabelMigrationUID: "mig-b"})
	for _, o := range []client.Object{bad, pvcB, pvB, replicationObj("b", "mig-b", "data-b", agentv1alpha1.ReplicationRoleTarget, dstNode, "")} {
		if err := dst.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	reconcileCtx(t, dst, "b")
	vr = dst.get(t, "b")
	c = findCondition(vr.Status.Conditions, agentv1alpha1.ConditionReceiverReady)
	if vr.Status.Phase != agentv1alpha1.VolumeReplicationFailed || c == nil || c.Reason != string(ReasonSecretInvalid) || !strings.Contains(vr.Status.Message, "target.key") {
		t.Errorf("phase %q condition %+v message %q, want Failed/SecretInvalid naming the missing key", vr.Status.Phase, c, vr.Status.Message)
	}
}

// TestSenderThatCannotStartReportsIt: a source whose claim is not bound
// yet shows SenderReady=False with the reason while it is retried, and
// starts once the claim is bound.
func TestSenderThatCannotStartReportsIt(t *testing.T) {
	src, _, srcDir, _ := setup(t)
	writeFile(t, filepath.Join(srcDir, "f"), 64<<10)
	pvc := &corev1.PersistentVolumeClaim{}
	if err := src.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "data-pg-0"}, pvc); err != nil {
		t.Fatal(err)
	}
	volume := pvc.Spec.VolumeName
	pvc.Spec.VolumeName = ""
	if err := src.client.Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := findCondition(src.get(t, "data-pg-0").Status.Conditions, agentv1alpha1.ConditionSenderReady)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason == string(ReasonClaimNotBound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SenderReady = %+v, want False/ClaimNotBound", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pvc.Spec.VolumeName = volume
	if err := src.client.Update(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
	pre := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	if c := findCondition(pre.Status.Conditions, agentv1alpha1.ConditionSenderReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("SenderReady = %+v once started, want True", c)
	}
	if strings.Contains(pre.Status.Message, "retrying") {
		t.Errorf("message %q still tells of the retry", pre.Status.Message)
	}
}

// TestProgressDuringPass: a long pass shows the bytes it has sent in
// status.bytesSent while it runs, and the total is not counted twice when
// it ends.
func TestProgressDuringPass(t *testing.T) {
	src, _, srcDir, _ := setup(t)
	const size = 6 << 20
	writeFile(t, filepath.Join(srcDir, "big"), size)
	src.rec.Clock = clock.RealClock{}
	src.rec.Config.ProgressInterval = 100 * time.Millisecond
	vr := src.get(t, "data-pg-0")
	vr.Spec.BandwidthLimit = resource.NewQuantity(2<<20, resource.BinarySI) // about 3 s
	if err := src.client.Update(context.Background(), vr); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	var seen []int64
	var mu sync.Mutex
	deadline := time.Now().Add(30 * time.Second)
	for {
		vr := src.get(t, "data-pg-0")
		if vr.Status.Round > 0 || vr.Status.Phase == agentv1alpha1.VolumeReplicationPreCopied {
			break
		}
		if vr.Status.BytesSent > 0 {
			mu.Lock()
			if len(seen) == 0 || seen[len(seen)-1] != vr.Status.BytesSent {
				seen = append(seen, vr.Status.BytesSent)
			}
			mu.Unlock()
		}
		if time.Now().After(deadline) {
			t.Fatal("the full pass did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) < 2 || seen[0] >= size {
		t.Fatalf("bytesSent during the full pass: %v, want it rising before the pass ended", seen)
	}
	pre := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	if pre.Status.BytesSent < size || pre.Status.BytesSent > size+size/10 {
		t.Errorf("bytesSent %d after pre-copy, want the %d bytes of the volume once (plus protocol overhead)", pre.Status.BytesSent, size)
	}
}

// TestAbortRemovesOnlyTheProvisionedDirectory: when the target volume's
// directory is a symbolic link, the abort follows it nowhere: what it
// points to stays, and the status says the data was not removed.
func TestAbortRemovesOnlyTheProvisionedDirectory(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	dstRoot := filepath.Join(base, "volumes")
	outside := filepath.Join(base, "precious")
	writeFile(t, filepath.Join(outside, "keep"), 10)
	if err := os.MkdirAll(filepath.Join(dstRoot, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dstRoot, "db", "pv-a")
	if err := os.Symlink(outside, target); err != nil {
		t.Fatal(err)
	}
	sec, _ := migrationSecret(t, "mig-a")
	pvc, pv := localClaim("data-a", "pv-a", target, dstNode, map[string]string{provision.LabelMigrationUID: "mig-a"})
	vr := replicationObj("a", "mig-a", "data-a", agentv1alpha1.ReplicationRoleTarget, dstNode, "")
	vr.Spec.Abort = true
	dst := newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1"}, sec, pvc, pv, vr)
	dst.reconcile(t, "a")
	got := dst.get(t, "a")
	if got.Status.Phase != agentv1alpha1.VolumeReplicationAborted || !strings.Contains(got.Status.Message, "not removed") {
		t.Errorf("phase %q message %q, want Aborted with the data not removed", got.Status.Phase, got.Status.Message)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the abort followed the symbolic link: %v", err)
	}

	// A link inside a provisioned directory is removed, not followed.
	target2 := filepath.Join(dstRoot, "db", "pv-b")
	writeFile(t, filepath.Join(target2, "data"), 10)
	if err := os.Symlink(outside, filepath.Join(target2, "link")); err != nil {
		t.Fatal(err)
	}
	pvcB, pvB := localClaim("data-b", "pv-b", target2, dstNode, map[string]string{provision.LabelMigrationUID: "mig-a"})
	vrB := replicationObj("b", "mig-a", "data-b", agentv1alpha1.ReplicationRoleTarget, dstNode, "")
	vrB.Spec.Abort = true
	for _, o := range []client.Object{pvcB, pvB, vrB} {
		if err := dst.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	dst.reconcile(t, "b")
	if _, err := os.Lstat(target2); !os.IsNotExist(err) {
		t.Errorf("provisioned directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the abort followed the link inside the volume: %v", err)
	}
}
