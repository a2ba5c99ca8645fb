package crdtest

import (
	"strings"
	"testing"
)

const podRestoreCRDPath = "../../../manifests/crds/agent.livemigrate.io_podrestores.yaml"

// podRestore is a PodRestore written at the freeze: checkpoints named, their
// images not pushed yet.
const podRestore = `
apiVersion: agent.livemigrate.io/v1alpha1
kind: PodRestore
metadata: {name: db-1234abcd, namespace: ns}
spec:
  migrationUID: 1234abcd-0000
  workload: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  checkpoints:
  - name: db-0
    ordinal: 0
    containers:
    - name: app
    - name: sidecar
`

// TestPodRestoreImagesAreRecordedOnce checks that the checkpoint images of
// a PodRestore can be added once (after the push) and never changed, and
// that nothing else about the checkpoints changes.
func TestPodRestoreImagesAreRecordedOnce(t *testing.T) {
	withImages := strings.Replace(strings.Replace(podRestore,
		"    - name: app\n", "    - name: app\n      image: reg/ns-db-0-app@sha256:aa\n", 1),
		"    - name: sidecar\n", "    - name: sidecar\n      image: reg/ns-db-0-sidecar@sha256:bb\n", 1)
	checkCEL(t, podRestoreCRDPath, map[string]celCase{
		"create without images": {new: podRestore},
		"create with images":    {new: withImages},
		"record the images":     {old: podRestore, new: withImages},
		"record them again":     {old: withImages, new: withImages},
		"change an image": {old: withImages, new: strings.Replace(withImages, "@sha256:aa", "@sha256:cc", 1),
			want: "a checkpoint image, once recorded, is immutable"},
		"drop an image": {old: withImages, new: strings.Replace(withImages, "      image: reg/ns-db-0-app@sha256:aa\n", "", 1),
			want: "a checkpoint image, once recorded, is immutable"},
		"rename a container": {old: podRestore, new: strings.Replace(podRestore, "name: sidecar", "name: other", 1),
			want: "a checkpoint's ordinal and containers are immutable"},
		"change the ordinal": {old: podRestore, new: strings.Replace(podRestore, "ordinal: 0", "ordinal: 1", 1),
			want: "a checkpoint's ordinal and containers are immutable"},
		"add a checkpoint": {old: podRestore, new: podRestore + "  - name: db-1\n    containers:\n    - name: app\n",
			want: "the set of checkpoints are immutable"},
		"change the migration": {old: podRestore, new: strings.Replace(podRestore, "migrationUID: 1234abcd-0000", "migrationUID: other", 1),
			want: "migrationUID, workload and the set of checkpoints are immutable"},
	})
}
