//! Container images on the node side. Today: unpacking one OCI image layer into its own
//! directory, ready to be an overlayfs lower directory ([`layer`]). Pulling from
//! registries, the content-addressed store and image records come with the runtime work.

pub mod layer;
