// Package checkpointimage turns a validated container checkpoint archive into
// a checkpoint image (OCI) and pushes it to a registry; and pulls one back.
//
// The image is what CRI-O and containerd restore from: one uncompressed
// layer holding the archive's contents (checkpoint/, config.dump, spec.dump,
// ...; the same files buildah adds for a checkpoint image), the annotation
// io.kubernetes.cri-o.annotations.checkpoint.name on the image manifest, and
// org.criu.checkpoint.container.name (with the other org.criu.checkpoint.*
// annotations) on the image index. The layer is streamed from the archive
// file, never held in memory, and is not recompressed: the archive already
// is the layer.
package checkpointimage
