// Package provision builds, as pure functions, the objects a volume
// replication needs in the target cluster, and locates a volume's data on a
// node.
//
//   - TargetClaim / TargetVolume: the PersistentVolumeClaim the workload will
//     claim in the target cluster — same namespace and name (StatefulSet
//     claims are named <template>-<statefulset>-<ordinal>, see
//     StatefulSetClaimName; Deployments use their claim names as they are),
//     same size, access modes and volume mode, the storage class mapped
//     through a configurable table. A local or hostPath source volume gets a
//     pre-bound local PersistentVolume on the target node, under a
//     configured root directory; other volumes are provisioned dynamically
//     by the mapped class.
//   - SourcePath / TargetPath: where the data is on a node: the path of a
//     local or hostPath volume, otherwise the pod's mount under the kubelet
//     root (/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~<plugin>/<pv>,
//     with /mount appended for CSI volumes).
//
// Nothing here talks to an API server; callers create the objects.
package provision
