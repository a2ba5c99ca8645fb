package replication

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/livemigrate/livemigrate/agent/replication"
	"github.com/livemigrate/livemigrate/agent/replication/certs"
	"github.com/livemigrate/livemigrate/agent/replication/controller"
	"github.com/livemigrate/livemigrate/agent/replication/provision"
	"github.com/livemigrate/livemigrate/agent/replication/treediff"
	agentv1alpha1 "github.com/livemigrate/livemigrate/api/agent/v1alpha1"
	"github.com/livemigrate/livemigrate/test/builder"
	"github.com/livemigrate/livemigrate/test/lab"
)

const (
	ns    = "e2e-replication"
	claim = "data-labapp-0"
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, agentv1alpha1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// installCRD applies the project's VolumeReplication CRD and waits until it
// is served.
func installCRD(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "manifests/crds/agent.livemigrate.io_volumereplications.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(crd); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	poll(ctx, t, "CRD established", func() (bool, string) {
		got := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, types.NamespacedName{Name: crd.Name}, got); err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, ""
			}
		}
		return false, "not established"
	})
}

// poll calls f every 100ms until it is done; it fails the test when ctx ends first.
func poll(ctx context.Context, t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	err := lab.Poll(ctx, what, 100*time.Millisecond, func(context.Context) (bool, string, error) {
		ok, msg := f()
		return ok, msg, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// agent runs the replication reconciler for one node of a member, as the
// agent binary does.
func agent(ctx context.Context, t *testing.T, m *lab.Member, s *runtime.Scheme, node string, targetRoots []string) {
	t.Helper()
	mgr, err := ctrl.NewManager(m.Config, ctrl.Options{
		Scheme: s, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// Two agents (one per member) share this test process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := replication.NewOptions()
	o.NodeName, o.ListenHost, o.AdvertiseHost = node, "127.0.0.1", "127.0.0.1"
	o.SecretNamespace = lab.AgentNamespace
	o.TargetRoots = targetRoots
	o.ConvergenceThreshold = "256Ki"
	o.ProgressInterval = 500 * time.Millisecond
	o.PortMin = freePort(t)
	o.PortMax = o.PortMin
	if err := replication.Setup(mgr, o); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager of %s: %v", m.Name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func create(ctx context.Context, t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func getVR(ctx context.Context, t *testing.T, c client.Client) *agentv1alpha1.VolumeReplication {
	t.Helper()
	vr := &agentv1alpha1.VolumeReplication{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: claim}, vr); err != nil {
		t.Fatal(err)
	}
	return vr
}

func waitPhase(ctx context.Context, t *testing.T, c client.Client, want agentv1alpha1.VolumeReplicationPhase) *agentv1alpha1.VolumeReplication {
	t.Helper()
	var vr *agentv1alpha1.VolumeReplication
	poll(ctx, t, "phase "+string(want), func() (bool, string) {
		vr = getVR(ctx, t, c)
		if vr.Status.Phase == agentv1alpha1.VolumeReplicationFailed && want != agentv1alpha1.VolumeReplicationFailed {
			t.Fatalf("replication failed: %s", vr.Status.Message)
		}
		return vr.Status.Phase == want, fmt.Sprintf("phase %q round %d message %q", vr.Status.Phase, vr.Status.Round, vr.Status.Message)
	})
	return vr
}

func TestPreCopyThroughRelayThenFinalWhileFrozen(t *testing.T) {
	e := requireEnv(t)
	_, lctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(klog.NewContext(lctx, klog.FromContext(lctx)), 4*time.Minute)
	defer cancel()
	m1, m2 := e.lab.Members[0], e.lab.Members[1]
	s := scheme(t)
	c1, err := client.New(m1.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := client.New(m2.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []client.Client{c1, c2} {
		installCRD(ctx, t, c)
		create(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lab.AgentNamespace}})
	}
	node1, node2 := m1.Nodes[0], m2.Nodes[0]
	srcDir := filepath.Join(e.dir, m1.Name, "disks", claim)
	targetRoot := filepath.Join(e.dir, m2.Name, "volumes")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		t.Fatal(err)
	}

	// Source: a local PV bound to the app's claim in member1.
	srcPV := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-src-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "local-storage",
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: srcDir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node1}}},
			}}}},
		},
	}
	srcPVC := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: ns, Labels: map[string]string{"app": "labapp"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("local-storage"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:       srcPV.Name,
		},
	}
	create(ctx, t, c1, srcPV, srcPVC)

	// Target: pre-provisioned in member2 from the source objects.
	uid := "e2e-" + fmt.Sprint(time.Now().UnixNano())
	dstPVC, dstPV, err := provision.Build(srcPVC, srcPV, provision.Options{
		MigrationUID: uid, TargetNodeName: node2, LocalRoot: targetRoot,
		StorageClassMap: map[string]string{"local-storage": "local-target"},
	})
	if err != nil {
		t.Fatal(err)
	}
	create(ctx, t, c2, dstPV, dstPVC)

	// Per-migration credentials, each side's Secret with its own key only,
	// in the agents' namespace, labelled for the migration.
	b, err := certs.Mint(certs.Options{MigrationUID: uid, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(role certs.Role) *corev1.Secret {
		d := b.SecretData()
		if role == certs.RoleSource {
			delete(d, certs.SecretKeyTargetKey)
		} else {
			delete(d, certs.SecretKeySourceKey)
		}
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "replication-" + uid, Namespace: lab.AgentNamespace,
			Labels: map[string]string{certs.LabelMigrationUID: uid, certs.LabelMigrationNamespace: ns}}, Data: d}
	}
	create(ctx, t, c1, secret(certs.RoleSource))
	create(ctx, t, c2, secret(certs.RoleTarget))

	agent(ctx, t, m1, s, node1, []string{targetRoot})
	agent(ctx, t, m2, s, node2, []string{targetRoot})

	// The lab app writes continuously to the source volume.
	app := exec.Command(e.labapp, "run", "--memory=4Mi", "--dirty-rate=1Mi", "--tick=2ms",
		"--log="+filepath.Join(srcDir, "counter.log"), "--state-dir="+filepath.Join(e.dir, "labapp-state"))
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Process.Kill(); _ = app.Wait() }()
	// Some bulk data next to the log, so that pre-copy has something to do.
	bulk := make([]byte, 8<<20)
	for i := range bulk {
		bulk[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(srcDir, "table.db"), bulk, 0o640); err != nil {
		t.Fatal(err)
	}

	vr := func(role agentv1alpha1.ReplicationRole, node, peer string) *agentv1alpha1.VolumeReplication {
		return builder.MakeVolumeReplication(ns, claim, uid, role, node, claim).Peer(peer).
			TLSSecret("replication-"+uid).PreCopy(4, nil).Obj()
	}
	create(ctx, t, c2, vr(agentv1alpha1.ReplicationRoleTarget, node2, ""))
	target := waitPhase(ctx, t, c2, agentv1alpha1.VolumeReplicationListening)
	// member1 reaches the receiver in member2 through the lab's WAN relay.
	peer, err := e.lab.Relay(m1.Name, m2.Name, target.Status.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := e.lab.Link(m1.Name, m2.Name)
	t.Logf("receiver %s reached through relay %s (one-way delay %s, %d B/s)", target.Status.Endpoint, peer, link.Delay, link.BytesPerSecond)
	create(ctx, t, c1, vr(agentv1alpha1.ReplicationRoleSource, node1, peer))

	pre := waitPhase(ctx, t, c1, agentv1alpha1.VolumeReplicationPreCopied)
	t.Logf("pre-copy: %d rounds, %d bytes sent, last delta %d bytes in %s, estimated final %s",
		pre.Status.Round, pre.Status.BytesSent, pre.Status.LastDeltaBytes, pre.Status.LastRoundDuration.Duration, pre.Status.EstimatedFinalDuration.Duration)
	if pre.Status.Round < 2 {
		t.Errorf("pre-copy ran %d rounds, want a full and at least one delta round", pre.Status.Round)
	}
	if pre.Status.BytesSent < int64(len(bulk)) {
		t.Errorf("pre-copy sent %d bytes, less than the volume's %d", pre.Status.BytesSent, len(bulk))
	}

	// CEL: the stage cannot go back once Final, and the roles are immutable.
	bad := pre.DeepCopy()
	bad.Spec.Role = agentv1alpha1.ReplicationRoleTarget
	if err := c1.Update(ctx, bad); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("changing the role was not rejected by validation: %v", err)
	}

	// CEL: a Source needs a peer, and podName belongs to a Source only.
	noPeer := vr(agentv1alpha1.ReplicationRoleSource, node1, "")
	noPeer.Name = "no-peer"
	if err := c1.Create(ctx, noPeer); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("a Source without peerAddress was not rejected: %v", err)
	}
	targetWithPod := vr(agentv1alpha1.ReplicationRoleTarget, node2, "")
	targetWithPod.Name, targetWithPod.Spec.PodName = "target-with-pod", "x"
	if err := c2.Create(ctx, targetWithPod); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("a Target with podName was not rejected: %v", err)
	}

	// The source agent verifies the target while the app still runs and
	// records what is equal, so that under freeze only what changes since
	// is read.
	poll(ctx, t, "pre-freeze verification", func() (bool, string) {
		c := meta.FindStatusCondition(getVR(ctx, t, c1).Status.Conditions, controller.ConditionPreVerified)
		if c == nil {
			return false, "no PreVerified condition"
		}
		return c.Status == metav1.ConditionTrue, c.Message
	})

	// Freeze the app, then ask for the final pass.
	if err := app.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let a write in flight reach the page cache
	final := getVR(ctx, t, c1)
	final.Spec.Stage = agentv1alpha1.ReplicationStageFinal
	if err := c1.Update(ctx, final); err != nil {
		t.Fatal(err)
	}
	done := waitPhase(ctx, t, c1, agentv1alpha1.VolumeReplicationCompleted)
	t.Logf("final: round %d, %s under freeze, checksum %s", done.Status.Round, done.Status.FinalDuration.Duration, done.Status.Checksum)
	if done.Status.Checksum != agentv1alpha1.ChecksumMatch {
		t.Errorf("checksum = %q, want Match", done.Status.Checksum)
	}
	verified := meta.FindStatusCondition(done.Status.Conditions, agentv1alpha1.ConditionVerified)
	if verified == nil || !strings.Contains(verified.Message, "unchanged since the pre-freeze verification") {
		t.Errorf("Verified condition %+v: want the targeted verification under freeze", verified)
	} else {
		t.Logf("verification: %s", verified.Message)
	}
	back := getVR(ctx, t, c1)
	back.Spec.Stage = agentv1alpha1.ReplicationStagePreCopy
	if err := c1.Update(ctx, back); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("moving the stage back to PreCopy was not rejected: %v", err)
	}

	dstDir, err := provision.TargetPath(dstPV)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := treediff.Compare(srcDir, dstDir, treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("target volume differs from the frozen source: %v", diffs)
	}
	srcLog, _ := os.ReadFile(filepath.Join(srcDir, "counter.log"))
	dstLog, _ := os.ReadFile(filepath.Join(dstDir, "counter.log"))
	if len(srcLog) == 0 || !bytes.Equal(srcLog, dstLog) {
		t.Fatalf("counter log: source %d bytes, target %d bytes, equal=%v", len(srcLog), len(dstLog), bytes.Equal(srcLog, dstLog))
	}
	t.Logf("target equals the frozen source byte for byte (%d bytes of counter log)", len(srcLog))

	// Abort on the target (what a rollback does): the agent stops the
	// receiver and removes the copy with its directory; the abort cannot be
	// withdrawn.
	ab := getVR(ctx, t, c2)
	ab.Spec.Abort = true
	if err := c2.Update(ctx, ab); err != nil {
		t.Fatal(err)
	}
	waitPhase(ctx, t, c2, agentv1alpha1.VolumeReplicationAborted)
	if _, err := os.Lstat(dstDir); !os.IsNotExist(err) {
		t.Errorf("target volume directory %s after abort: %v; want it removed", dstDir, err)
	}
	if _, err := os.Stat(filepath.Dir(dstDir)); err != nil {
		t.Errorf("the abort removed more than the volume's directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srcDir, "counter.log")); err != nil {
		t.Errorf("the abort touched the source: %v", err)
	}
	ab = getVR(ctx, t, c2)
	ab.Spec.Abort = false
	if err := c2.Update(ctx, ab); err == nil || !apierrors.IsInvalid(err) {
		t.Errorf("withdrawing an abort was not rejected: %v", err)
	}
}
