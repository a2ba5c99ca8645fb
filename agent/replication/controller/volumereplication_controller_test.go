package controller

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/internal/testharness"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
)

const (
	ns = "db"
	// agentNS is the agents' own namespace, where the credentials live.
	agentNS = "livemigrate-system"
	uid     = "mig-ctrl-1"
	srcNode = "member1-node"
	dstNode = "member2-node"
)

type cluster struct {
	client client.Client
	rec    *VolumeReplicationReconciler
}

func newCluster(t *testing.T, node string, cfg Config, objs ...client.Object) *cluster {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := agentv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&agentv1alpha1.VolumeReplication{}).Build()
	cfg.NodeName = node
	if cfg.SecretNamespace == "" {
		cfg.SecretNamespace = agentNS
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = time.Second
	}
	r := &VolumeReplicationReconciler{Client: c, Reader: c, Clock: clocktesting.NewFakeClock(time.Now()), Config: cfg}
	t.Cleanup(r.Shutdown)
	return &cluster{client: c, rec: r}
}

func (c *cluster) reconcile(t *testing.T, name string) {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	if _, err := c.rec.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}); err != nil {
		t.Fatalf("reconcile %s: %v", name, err)
	}
}

func (c *cluster) get(t *testing.T, name string) *agentv1alpha1.VolumeReplication {
	t.Helper()
	vr := &agentv1alpha1.VolumeReplication{}
	if err := c.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, vr); err != nil {
		t.Fatal(err)
	}
	return vr
}

func (c *cluster) waitPhase(t *testing.T, name string, want agentv1alpha1.VolumeReplicationPhase) *agentv1alpha1.VolumeReplication {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		vr := c.get(t, name)
		if vr.Status.Phase == want {
			return vr
		}
		if vr.Status.Phase == agentv1alpha1.VolumeReplicationFailed && want != agentv1alpha1.VolumeReplicationFailed {
			t.Fatalf("%s failed: %s", name, vr.Status.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: phase %q, want %q (message %q)", name, vr.Status.Phase, want, vr.Status.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func localClaim(name, volume, path, node string, labels map[string]string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:  volume,
		},
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: volume},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			ClaimRef:               &corev1.ObjectReference{Namespace: ns, Name: name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
		},
	}
	return pvc, pv
}

func secret(b *certs.Bundle) *corev1.Secret {
	return credentials("replication-tls", uid, b)
}

// credentials is the Secret the migration's controller writes for
// migration mig: in the agents' namespace, labelled for the migration and
// the namespace of its VolumeReplications.
func credentials(name, mig string, b *certs.Bundle) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: agentNS,
		Labels: map[string]string{certs.LabelMigrationUID: mig, certs.LabelMigrationNamespace: ns}}, Data: b.SecretData()}
}

func vrObj(name string, role agentv1alpha1.ReplicationRole, node, peer string) *agentv1alpha1.VolumeReplication {
	return builder.MakeVolumeReplication(ns, name, uid, role, node, "data-pg-0").Generation(1).
		Peer(peer).TLSSecret("replication-tls").PreCopy(3, resource.NewQuantity(1<<20, resource.BinarySI)).
		Stage(agentv1alpha1.ReplicationStagePreCopy).Obj()
}

// setup builds a source cluster and a target cluster (fake API servers, real
// directories, real rsync over real mutual TLS on loopback).
func setup(t *testing.T) (src, dst *cluster, srcDir, dstRoot string) {
	t.Helper()
	testharness.RequireRoot(t)
	base := t.TempDir()
	srcDir = filepath.Join(base, "member1", "disks", "pg")
	dstRoot = filepath.Join(base, "member2", "volumes")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := certs.Mint(certs.Options{MigrationUID: uid, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	spvc, spv := localClaim("data-pg-0", "pv-src", srcDir, srcNode, nil)
	dpvc, dpv := localClaim("data-pg-0", "pv-dst", filepath.Join(dstRoot, "db", "pv-dst"), dstNode, map[string]string{provision.LabelMigrationUID: uid})
	dst = newCluster(t, dstNode, Config{TargetRoots: []string{dstRoot}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1"},
		dpvc, dpv, secret(b), vrObj("data-pg-0", agentv1alpha1.ReplicationRoleTarget, dstNode, ""))
	dst.reconcile(t, "data-pg-0")
	tv := dst.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationListening)
	if tv.Status.Endpoint == "" {
		t.Fatal("target reports no endpoint")
	}
	src = newCluster(t, srcNode, Config{}, spvc, spv, secret(b), vrObj("data-pg-0", agentv1alpha1.ReplicationRoleSource, srcNode, tv.Status.Endpoint))
	return src, dst, srcDir, dstRoot
}

func writeFile(t *testing.T, p string, n int) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSourceAndTargetEndToEnd(t *testing.T) {
	src, _, srcDir, dstRoot := setup(t)
	writeFile(t, filepath.Join(srcDir, "base", "table"), 2<<20)
	writeFile(t, filepath.Join(srcDir, "wal", "0001"), 100<<10)

	src.reconcile(t, "data-pg-0")
	pre := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	if pre.Status.Round < 2 {
		t.Errorf("round = %d after pre-copy, want >= 2 (full + converged delta)", pre.Status.Round)
	}
	if pre.Status.BytesSent < 2<<20 || pre.Status.BytesTotal < 2<<20 {
		t.Errorf("bytes sent %d / total %d, want at least the 2 MiB file", pre.Status.BytesSent, pre.Status.BytesTotal)
	}
	if pre.Status.EstimatedFinalDuration == nil || pre.Status.LastRoundDuration == nil {
		t.Error("estimate or last round duration missing from status")
	}
	if c := findCondition(pre.Status.Conditions, agentv1alpha1.ConditionConverged); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Converged condition = %+v, want True", c)
	}
	// PreCopied (which lets the controller freeze the application) comes
	// only after the pre-freeze verification: a freeze before it would
	// leave the final pass without records, verifying the whole volume
	// under freeze.
	if c := findCondition(pre.Status.Conditions, ConditionPreVerified); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("PreVerified condition = %+v when PreCopied was reported, want True", c)
	}

	// The application writes more, then is frozen; the controller asks for
	// the final pass.
	writeFile(t, filepath.Join(srcDir, "wal", "0002"), 50<<10)
	if err := os.Remove(filepath.Join(srcDir, "wal", "0001")); err != nil {
		t.Fatal(err)
	}
	vr := src.get(t, "data-pg-0")
	vr.Spec.Stage = agentv1alpha1.ReplicationStageFinal
	if err := src.client.Update(context.Background(), vr); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	done := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationCompleted)
	if done.Status.Checksum != agentv1alpha1.ChecksumMatch {
		t.Errorf("checksum = %q, want Match", done.Status.Checksum)
	}
	if done.Status.Round != pre.Status.Round+1 {
		t.Errorf("final round = %d, want %d", done.Status.Round, pre.Status.Round+1)
	}
	if done.Status.FinalDuration == nil || done.Status.CompletionTime == nil {
		t.Error("final duration or completion time missing")
	}
	diffs, err := treediff.Compare(srcDir, filepath.Join(dstRoot, "db", "pv-dst"), treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Errorf("target differs: %v", diffs)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	src, _, srcDir, _ := setup(t)
	writeFile(t, filepath.Join(srcDir, "f"), 1<<20)
	// The previous agent had completed round 1 and died.
	vr := src.get(t, "data-pg-0")
	vr.Status.Phase = agentv1alpha1.VolumeReplicationPreCopying
	vr.Status.Round = 1
	if err := src.client.Status().Update(context.Background(), vr); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	pre := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	if pre.Status.Round != 2 {
		t.Errorf("round = %d, want 2 (resumed after round 1)", pre.Status.Round)
	}
}

func TestAbortCleansTarget(t *testing.T) {
	src, dst, srcDir, dstRoot := setup(t)
	writeFile(t, filepath.Join(srcDir, "f"), 1<<20)
	src.reconcile(t, "data-pg-0")
	src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	target := filepath.Join(dstRoot, "db", "pv-dst")
	if _, err := os.Stat(filepath.Join(target, "f")); err != nil {
		t.Fatalf("nothing replicated before the abort: %v", err)
	}
	for _, c := range []*cluster{src, dst} {
		vr := c.get(t, "data-pg-0")
		vr.Spec.Abort = true
		if err := c.client.Update(context.Background(), vr); err != nil {
			t.Fatal(err)
		}
		c.reconcile(t, "data-pg-0")
		c.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationAborted)
	}
	// The copy and the directory provisioned for it are gone; the target
	// root and the namespace directory stay.
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("target directory still there after abort (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dstRoot, "db")); err != nil {
		t.Errorf("abort removed more than the volume's directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srcDir, "f")); err != nil {
		t.Errorf("abort touched the source: %v", err)
	}
	dst.rec.mu.Lock()
	n := len(dst.rec.receivers)
	dst.rec.mu.Unlock()
	if n != 0 {
		t.Errorf("%d receivers still running after abort", n)
	}
}

func TestTargetRefusesForeignClaimAndPath(t *testing.T) {
	testharness.RequireRoot(t)
	base := t.TempDir()
	b, _ := certs.Mint(certs.Options{MigrationUID: uid})
	tests := []struct {
		name   string
		labels map[string]string
		path   string
	}{
		{name: "claim of another migration", labels: map[string]string{provision.LabelMigrationUID: "other"}, path: filepath.Join(base, "volumes", "x")},
		{name: "claim without label", path: filepath.Join(base, "volumes", "x")},
		{name: "path outside the target roots", labels: map[string]string{provision.LabelMigrationUID: uid}, path: "/etc"},
		{name: "path escaping the root", labels: map[string]string{provision.LabelMigrationUID: uid}, path: filepath.Join(base, "volumes", "..", "etc")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pvc, pv := localClaim("data-pg-0", "pv-dst", tt.path, dstNode, tt.labels)
			c := newCluster(t, dstNode, Config{TargetRoots: []string{filepath.Join(base, "volumes")}, ListenHost: "127.0.0.1", AdvertiseHost: "127.0.0.1"},
				pvc, pv, secret(b), vrObj("data-pg-0", agentv1alpha1.ReplicationRoleTarget, dstNode, ""))
			c.reconcile(t, "data-pg-0")
			vr := c.get(t, "data-pg-0")
			if vr.Status.Phase != agentv1alpha1.VolumeReplicationFailed {
				t.Errorf("phase = %q, want Failed", vr.Status.Phase)
			}
			if vr.Status.Message == "" {
				t.Error("no failure message")
			}
		})
	}
}

func TestOtherNodesObjectsIgnored(t *testing.T) {
	c := newCluster(t, "node-a", Config{}, vrObj("data-pg-0", agentv1alpha1.ReplicationRoleSource, "node-b", "127.0.0.1:1"))
	c.reconcile(t, "data-pg-0")
	if got := c.get(t, "data-pg-0").Status.Phase; got != "" {
		t.Errorf("phase = %q, want untouched", got)
	}
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

func TestKeepWarmWhileWaitingForFinal(t *testing.T) {
	src, _, srcDir, dstRoot := setup(t)
	src.rec.Config.KeepWarmInterval = time.Minute
	writeFile(t, filepath.Join(srcDir, "f"), 1<<20)
	src.reconcile(t, "data-pg-0")
	pre := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	for src.workerRunning() {
		time.Sleep(10 * time.Millisecond)
	}

	// Within the interval: nothing runs, the reconciler asks to come back.
	_, ctx := ktesting.NewTestContext(t)
	key := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "data-pg-0"}}
	res, err := src.rec.Reconcile(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
		t.Errorf("RequeueAfter = %v, want within the keep-warm interval", res.RequeueAfter)
	}
	if src.workerRunning() {
		t.Fatal("a keep-warm pass started before the interval elapsed")
	}

	// The application keeps writing; once the interval has passed, one more
	// delta pass runs and the phase stays PreCopied.
	writeFile(t, filepath.Join(srcDir, "late"), 64<<10)
	src.rec.Clock.(*clocktesting.FakeClock).Step(2 * time.Minute)
	if _, err := src.rec.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		vr := src.get(t, "data-pg-0")
		if vr.Status.Round == pre.Status.Round+1 && !src.workerRunning() {
			if vr.Status.Phase != agentv1alpha1.VolumeReplicationPreCopied {
				t.Errorf("phase = %q during keep-warm, want PreCopied", vr.Status.Phase)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no keep-warm pass: round %d, want %d", vr.Status.Round, pre.Status.Round+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dstRoot, "db", "pv-dst", "late")); err != nil {
		t.Errorf("the keep-warm pass did not replicate the new file: %v", err)
	}
}

func (c *cluster) workerRunning() bool {
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	return len(c.rec.workers) > 0
}

// TestFinalReadsOnlyWhatChangedSincePreVerification: after pre-copy the
// source agent verifies (and indexes) the target while the application
// runs; under freeze only the entry that changed since is sent, as a block
// delta, and compared, as the Verified condition and the metrics show.
func TestFinalReadsOnlyWhatChangedSincePreVerification(t *testing.T) {
	preChecksummed := since(t, verified.WithLabelValues(stagePreFreeze, "checksummed"))
	finalBlockCompared := since(t, verified.WithLabelValues(stageFinal, "blockcompared"))
	finalChecksummed := since(t, verified.WithLabelValues(stageFinal, "checksummed"))
	finalUnchanged := since(t, verified.WithLabelValues(stageFinal, "unchanged"))
	byBlockDelta := since(t, finalMethods.WithLabelValues("blockdelta", ""))
	src, _, srcDir, dstRoot := setup(t)
	for _, p := range []string{"base/t1", "base/t2", "base/t3", "wal/0001", "wal/0002"} {
		writeFile(t, filepath.Join(srcDir, p), 64<<10)
	}
	src.reconcile(t, "data-pg-0")
	src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c := findCondition(src.get(t, "data-pg-0").Status.Conditions, ConditionPreVerified); c != nil && c.Status == metav1.ConditionTrue {
			if !strings.Contains(c.Message, "8 entries recorded as equal") {
				t.Errorf("PreVerified message %q, want all 8 entries recorded", c.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pre-freeze verification reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := preChecksummed(); got != 8 {
		t.Errorf("pre-freeze checksummed entries = %v, want 8", got)
	}

	writeFile(t, filepath.Join(srcDir, "wal", "0002"), 64<<10) // rewritten while running
	vr := src.get(t, "data-pg-0")
	vr.Spec.Stage = agentv1alpha1.ReplicationStageFinal
	if err := src.client.Update(context.Background(), vr); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	done := src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationCompleted)
	c := findCondition(done.Status.Conditions, agentv1alpha1.ConditionVerified)
	if c == nil || !strings.Contains(c.Message, "block delta: block hashes and metadata match; under freeze: 8 entries: 1 compared block by block (block delta), 7 unchanged") {
		t.Errorf("Verified condition %+v, want the 1 changed entry of 8 sent as a block delta and compared under freeze", c)
	}
	if got := finalBlockCompared(); got != 1 {
		t.Errorf("compared block by block under freeze = %v, want 1", got)
	}
	if got := finalChecksummed(); got != 0 {
		t.Errorf("checksummed under freeze = %v, want 0 (the block delta proved the changed file)", got)
	}
	if got := byBlockDelta(); got != 1 {
		t.Errorf("final passes by block delta = %v, want 1", got)
	}
	if got := finalUnchanged(); got != 7 {
		t.Errorf("unchanged under freeze = %v, want 7", got)
	}
	if d, err := treediff.Compare(srcDir, filepath.Join(dstRoot, "db", "pv-dst"), treediff.Options{}); err != nil || len(d) != 0 {
		t.Errorf("target differs: %v %v", d, err)
	}
}

// flakyProxy forwards connections to target, except the first, which it
// closes at once: a transient network failure.
func flakyProxy(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if n == 0 {
				_ = c.Close()
				continue
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return l.Addr().String()
}

// TestTransientFailureRetried: the first connection to the receiver fails;
// the pass is retried, the retry shows in an event and in the metrics, and
// the replication reaches PreCopied.
func TestTransientFailureRetried(t *testing.T) {
	fullRetries := since(t, retries.WithLabelValues("full"))
	src, _, srcDir, dstRoot := setup(t)
	writeFile(t, filepath.Join(srcDir, "f"), 256<<10)
	rec := events.NewFakeRecorder(100)
	src.rec.Recorder = rec
	vr := src.get(t, "data-pg-0")
	vr.Spec.PeerAddress = flakyProxy(t, vr.Spec.PeerAddress)
	if err := src.client.Update(context.Background(), vr); err != nil {
		t.Fatal(err)
	}
	src.reconcile(t, "data-pg-0")
	src.waitPhase(t, "data-pg-0", agentv1alpha1.VolumeReplicationPreCopied)
	if got := fullRetries(); got != 1 {
		t.Errorf("retries of the full pass = %v, want 1", got)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, ReasonPassRetried) || !strings.Contains(e, "retrying full pass of round 1") {
			t.Errorf("event %q, want a PassRetried event for round 1", e)
		}
	default:
		t.Error("no event recorded for the retried pass")
	}
	if d, err := treediff.Compare(srcDir, filepath.Join(dstRoot, "db", "pv-dst"), treediff.Options{}); err != nil || len(d) != 0 {
		t.Errorf("target differs: %v %v", d, err)
	}
}
