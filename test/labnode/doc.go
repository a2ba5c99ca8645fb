// Package labnode is the lab's node runtime for kwok nodes: the stand-in for
// the kubelet and CRI-O, met at their documented contracts. With
// Config.ContainerRuntime "runc" the containers are real runc containers,
// checkpointed with runc checkpoint (CRIU) into CRI-O's archive and restored
// with runc restore (runc.go); with "process", the default, it is the memory
// stand-in described below, for machines where CRIU does not work.
//
//   - Pods bound to the node whose containers run the lab app image get one
//     real labapp process per container, inside the pod's own cgroup in the
//     kubelet layout (<parent>/kubepods/burstable/pod<uid>, cgroup v1
//     freezer), so the agent's real freezer freezes them.
//   - The kubelet checkpoint API (POST /checkpoint/{ns}/{pod}/{container})
//     over TLS on the node's port, authorized with a TokenReview and a
//     SubjectAccessReview for nodes/checkpoint against the member apiserver.
//     A checkpoint copies the (frozen) process's memory out with
//     process_vm_readv (/proc/<pid>/mem where that is refused), as CRIU
//     copies a frozen task's pages, and writes a CRI-O layout
//     archive to <root>/checkpoints/checkpoint-<pod>_<ns>-<container>-<RFC3339>.tar.
//     Like CRI-O it pauses a running container for the dump and resumes it
//     afterwards: only the agent's freeze keeps a pod stopped.
//   - A pod whose image is a checkpoint image is pulled from the registry,
//     checked like any untrusted archive, and its lab app starts from the
//     dumped memory.
//   - Post-copy, runc only (lazypages.go): a container whose CRIU
//     configuration file (CRIUConfigPath) selects lazy pages is checkpointed
//     with runc checkpoint --lazy-pages, the request answered once CRIU's
//     page server listens, and restored with runc restore --lazy-pages
//     through a criu lazy-pages daemon pointed at that page server. The
//     memory stand-in refuses such a checkpoint.
//   - StartRegistry serves an OCI registry (go-containerregistry) for the lab.
//
// It never touches pods that do not run the lab app. Pods labelled
// LabelRuntime are its own as a kubelet's are: it writes their status
// (Running and Ready once their processes run), and it removes a deleted
// one's object only once its processes have exited (grace period 0, the
// pod's UID as precondition), so that no pod object is gone while its
// process still runs. kwok does both for every other pod.
package labnode
