package install

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/test/lab"
)

// doctor runs kubectl livemigrate doctor against the lab's Karmada plane,
// as a user would with the karmada-apiserver's kubeconfig.
func doctor(ctx context.Context, t *testing.T) (string, error) {
	t.Helper()
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl-livemigrate"), "doctor", "--kubeconfig", testLab.Karmada.Kubeconfig).CombinedOutput()
	return string(out), err
}

// waitDoctor runs the doctor until its report matches every line (and it
// fails or passes as wanted), or the context ends.
//
// The reports are not logged when they match: their expected FAIL lines
// would be the first "FAIL" in a CI log, ahead of a real failure.
func waitDoctor(ctx context.Context, t *testing.T, wantFail bool, lines ...*regexp.Regexp) string {
	t.Helper()
	var out string
	var err error
	for {
		out, err = doctor(ctx, t)
		matched := true
		for _, l := range lines {
			matched = matched && l.MatchString(out)
		}
		if (err != nil) == wantFail && matched {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the doctor never reported %q with failure=%v; last report (error %v):\n%s", lines, wantFail, err, out)
		case <-time.After(time.Second):
		}
	}
}

// TestDoctor checks the installation the chart made: every check passes;
// an agent killed on one node, that node's kubelet checkpoint API gone,
// the checkpoint registry stopped and the descheduler killed each make it
// fail with that check and what to fix, and pass again once restarted.
func TestDoctor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The lab's kwok nodes report a runtime the doctor does not know to
	// checkpoint: a WARN, which does not fail the doctor.
	healthy := regexp.MustCompile(`(?m)^WARN\s+member2\s+agent member2-node-2\s+runtime kwok-[^,]+, kernel .+, (amd64|arm64), freezer v1, checkpoint API ok, registries \S+ reachable: unknown runtime`)
	// The probers write their first ClusterLatency a round after the lab is up.
	probed := regexp.MustCompile(`(?m)^OK\s+member1\s+prober\s+ClusterLatency written[^\n]*\n(?s:.*)^OK\s+member2\s+prober\s+ClusterLatency written`)
	out := waitDoctor(ctx, t, false, healthy, probed)
	for _, want := range []string{
		`(?m)^OK\s+karmada\s+crd livemigrations.livemigrate.io\s+Established, v1alpha1`,
		`(?m)^OK\s+karmada\s+descheduler webhook\s+answers a dry-run LiveMigration`,
		`(?m)^OK\s+karmada\s+livemigrate-descheduler\s+Lease karmada-system/livemigrate-descheduler`,
		`(?m)^OK\s+karmada\s+livemigrate-scheduler\s+Lease karmada-system/`,
		`(?m)^OK\s+member1\s+prober\s+ClusterLatency written`,
		`(?m)^OK\s+member1\s+crd podcheckpoints.agent.livemigrate.io`,
		`(?m)^OK\s+member1\s+restore webhook\s+Lease livemigrate-system/livemigrate-agent-restore`,
		`(?m)^WARN\s+member1\s+agent member1-node-1\s+runtime .*, kernel .+, (amd64|arm64)`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the healthy report has no line matching %s", want)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("a check fails on the healthy installation:\n%s", out)
	}

	// An agent down.
	agent := testLab.Instance("livemigrate-agent-member2-node-2")
	if agent == nil {
		t.Fatal("no agent on member2-node-2")
	}
	if err := testLab.Kill(agent); err != nil {
		t.Fatal(err)
	}
	out = waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+the agent is not running: its report held by "member2-node-2", last renewed \d+s ago[^\n]*\n\s+→ kubectl -n livemigrate-system get pods -l app.kubernetes.io/name=livemigrate-agent --field-selector spec.nodeName=member2-node-2`))
	if n := strings.Count(out, "FAIL"); n != 1 {
		t.Errorf("%d failing checks with one agent down, want 1:\n%s", n, out)
	}
	if err := testLab.Restart(ctx, agent); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The node's kubelet checkpoint API down (the lab node runtime serves it).
	kubeletAPI := testLab.Instance("labnode-member2-node-2")
	if kubeletAPI == nil {
		t.Fatal("no node runtime on member2-node-2")
	}
	if err := testLab.Kill(kubeletAPI); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+runtime [^\n]*freezer v1: the kubelet's checkpoint API did not answer: [^\n]*\n\s+→ the agent calls POST /checkpoint/`))
	if err := testLab.Restart(ctx, kubeletAPI); err != nil {
		t.Fatal(err)
	}
	// The lab node runtime serves with a new self-signed certificate after
	// its restart, which the agent reads when it starts (as after a
	// kubelet's regenerated self-signed certificate): the doctor keeps
	// failing the node until the agent restarts too.
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member2\s+agent member2-node-2\s+[^\n]*checkpoint API did not answer: [^\n]*x509`))
	if err := testLab.Kill(agent); err != nil {
		t.Fatal(err)
	}
	if err := testLab.Restart(ctx, agent); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The checkpoint registry down: every node reports it unreachable.
	reg := testLab.Instances("lab-registry")
	if len(reg) != 1 {
		t.Fatalf("%d lab registries, want 1", len(reg))
	}
	if err := testLab.Kill(reg[0]); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+member1\s+agent member1-node-1\s+runtime [^\n]*checkpoint API ok: registry \S+ unreachable: [^\n]*\n\s+→ the node pushes checkpoint images to and pulls them from these registries: make them reachable from member1-node-1`))
	if err := testLab.Restart(ctx, reg[0]); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, healthy)

	// The descheduler down: its webhook no longer answers.
	desch := testLab.Instance("livemigrate-descheduler")
	if err := testLab.Kill(desch); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, true, regexp.MustCompile(`(?m)^FAIL\s+karmada\s+descheduler webhook\s+.*failed calling webhook[^\n]*\n\s+→ the descheduler is not running`))
	if err := testLab.Restart(ctx, desch); err != nil {
		t.Fatal(err)
	}
	waitDoctor(ctx, t, false, regexp.MustCompile(`(?m)^OK\s+karmada\s+descheduler webhook`))
}
