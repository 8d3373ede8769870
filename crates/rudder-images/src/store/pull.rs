//! Pulling an image from a registry into the store: resolve the reference to a manifest
//! (through an index when there is one, picking the store's platform), fetch the config,
//! then download and unpack the layers that are not in the store yet, a few at a time, and
//! record the image. The lease lock is held shared throughout, so gc waits for the pull.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::lock::FileLock;
use super::{ImageStore, NewImage, StoreError, read_limited};
use crate::credentials::{Auth, Credentials};
use crate::digest::Digest;
use crate::layer::Compression;
use crate::manifest::{self, Descriptor, MAX_DOCUMENT_BYTES, ManifestError, Parsed};
use crate::progress::{Progress, ProgressEvent};
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryError};

impl ImageStore {
    /// Pulls `reference` (normalised like Docker: `busybox` is
    /// `docker.io/library/busybox:latest`) with the credentials that match its registry
    /// (each in turn while the registry says unauthorized; anonymous when none match).
    pub async fn pull(
        &self,
        reference: &str,
        credentials: &Credentials,
        progress: &dyn Progress,
    ) -> Result<crate::ImageRecord, StoreError> {
        let image = ImageRef::parse(reference)?;
        let timeout_ms = self.options.pull_timeout_ms;
        let span = tracing::info_span!("pull", image = %image);
        let record = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.pull_image(&image, credentials, progress).instrument(span.clone()),
        )
        .await
        .map_err(|_| StoreError::Timeout { reference: image.to_string(), timeout_ms })??;
        span.in_scope(|| tracing::info!(digest = %record.digest, "pulled"));
        Ok(record)
    }

    async fn pull_image(
        &self,
        image: &ImageRef,
        credentials: &Credentials,
        progress: &dyn Progress,
    ) -> Result<crate::ImageRecord, StoreError> {
        let _lease = FileLock::acquire_async(&self.lease_path(), false).await?;
        let candidates = credentials.for_image(image);
        let auths: Vec<Option<&Auth>> = if candidates.is_empty() {
            vec![None]
        } else {
            candidates.into_iter().map(Some).collect()
        };
        let mut unauthorized = None;
        for auth in auths {
            let registry = Registry::new(self.registry_options.clone(), image, auth)?;
            match registry.manifest(None).await {
                Ok((bytes, digest)) => {
                    return self.pull_manifest(image, &registry, bytes, digest, progress).await;
                }
                Err(e @ RegistryError::Unauthorized { .. }) => unauthorized = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(unauthorized.map_or_else(|| StoreError::NotFound(image.to_string()), Into::into))
    }

    async fn pull_manifest(
        &self,
        image: &ImageRef,
        registry: &Registry,
        top_bytes: bytes::Bytes,
        top_digest: Digest,
        progress: &dyn Progress,
    ) -> Result<crate::ImageRecord, StoreError> {
        let (index_bytes, manifest_bytes, manifest_digest, manifest) =
            match manifest::parse(&top_bytes, None)? {
                Parsed::Manifest(m) => (None, top_bytes, top_digest.clone(), m),
                Parsed::Index(entries) => {
                    let entry = manifest::select_platform(
                        &entries,
                        &self.options.os,
                        &self.options.architecture,
                    )?;
                    let digest = Digest::parse(&entry.digest)?;
                    let (bytes, digest) = registry.manifest(Some(&digest)).await?;
                    match manifest::parse(&bytes, Some(&entry.media_type))? {
                        Parsed::Manifest(m) => (Some(top_bytes), bytes, digest, m),
                        Parsed::Index(_) => {
                            return Err(ManifestError::MediaType(
                                "an index inside an index".into(),
                            )
                            .into());
                        }
                    }
                }
            };
        let config_digest = Digest::parse(&manifest.config.digest)?;
        let config_bytes = match self.blob_path(&config_digest) {
            p if p.exists() => read_limited(&p, MAX_DOCUMENT_BYTES)?,
            _ => registry.small_blob(&manifest.config, MAX_DOCUMENT_BYTES as u64).await?,
        };
        Digest::of(&config_bytes).verify(&config_digest, "image config")?;
        let config = manifest::parse_config(&config_bytes)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(ManifestError::LayerCount {
                layers: manifest.layers.len(),
                diff_ids: config.diff_ids.len(),
            }
            .into());
        }
        let reference = image.to_string();
        progress.on_event(&ProgressEvent::Resolved {
            reference: &reference,
            digest: top_digest.as_str(),
            layers: manifest.layers.len(),
            total_bytes: manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
        });
        // The futures are built first, not in a stream's closure: that keeps the pull
        // future `Send` (rust-lang/rust#104382), so callers can spawn it.
        let layers: Vec<_> = manifest
            .layers
            .iter()
            .zip(&config.diff_ids)
            .map(|(desc, diff_id)| self.pull_layer(registry, desc, diff_id, progress))
            .collect();
        futures::stream::iter(layers)
            .buffer_unordered(self.options.max_concurrent_downloads.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        let record = self.commit(NewImage {
            digest: top_digest.clone(),
            manifest_digest,
            index_bytes: index_bytes.as_deref(),
            manifest_bytes: &manifest_bytes,
            manifest: &manifest,
            config_bytes: &config_bytes,
            config,
            names: image.tagged_name().into_iter().collect(),
            repo_digests: vec![image.with_digest(&top_digest)],
        })?;
        progress
            .on_event(&ProgressEvent::Done { reference: &reference, digest: top_digest.as_str() });
        Ok(record)
    }

    async fn pull_layer(
        &self,
        registry: &Registry,
        desc: &Descriptor,
        diff_id: &Digest,
        progress: &dyn Progress,
    ) -> Result<(), StoreError> {
        let size_bytes = desc.size.max(0) as u64;
        let _guard = self.layer_locks.lock(diff_id.hex()).await;
        if self.layer_dir(diff_id).exists() {
            progress.on_event(&ProgressEvent::LayerPresent { digest: &desc.digest, size_bytes });
            return Ok(());
        }
        let compression = Compression::from_media_type(&desc.media_type)
            .map_err(|source| StoreError::Layer { diff_id: diff_id.to_string(), source })?;
        let blob = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp_dir())
            .map_err(|e| StoreError::io(&self.tmp_dir(), e))?;
        registry.blob_to_file(desc, blob.path(), progress).await?;
        progress.on_event(&ProgressEvent::LayerUnpacking { digest: &desc.digest });
        self.install_layer(diff_id, compression, blob.path(), None).await?;
        progress.on_event(&ProgressEvent::LayerDone { digest: &desc.digest });
        Ok(())
    }
}
