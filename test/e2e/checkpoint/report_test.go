package checkpoint

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/livemigrate/livemigrate/agent/report"
	"github.com/livemigrate/livemigrate/test/lab"
	"github.com/livemigrate/livemigrate/test/labnode"
)

// TestAgentReportsCRIU: every node agent reports the CRIU its node runtime
// runs (criu --version) and that criu check passed, the values the
// migration's compatibility check compares. With the stand-in the agents
// have no criu and report none.
func TestAgentReportsCRIU(t *testing.T) {
	e := requireEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wantVersion, wantCheck := "", ""
	if e.lab.NodeRuntime() == lab.NodeRuntimeRunc {
		v, err := labnode.ReadCRIUVersion(e.lab.CRIU())
		if err != nil {
			t.Fatal(err)
		}
		wantVersion, wantCheck = v, report.CRIUCheckOK
	}
	for _, m := range e.lab.Members {
		c := e.members[m.Name]
		for _, node := range m.Nodes {
			var last string
			for {
				l := &coordinationv1.Lease{}
				err := c.CR.Get(ctx, types.NamespacedName{Namespace: lab.AgentNamespace, Name: report.LeaseName(node)}, l)
				if err == nil {
					v, vok := l.Annotations[report.AnnotationCRIUVersion]
					ck, cok := l.Annotations[report.AnnotationCRIUCheck]
					if v == wantVersion && ck == wantCheck && vok == (wantVersion != "") && cok == (wantCheck != "") {
						break
					}
					last = fmt.Sprintf("criu-version %q (set %v), criu-check %q (set %v)", v, vok, ck, cok)
				} else {
					last = err.Error()
				}
				select {
				case <-ctx.Done():
					t.Fatalf("node %s of %s: the agent's report never carried CRIU %q with check %q; last: %s", node, m.Name, wantVersion, wantCheck, last)
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}
}
